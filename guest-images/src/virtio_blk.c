/*
 * virtio-blk over virtio-mmio (virtio 1.x "modern", register layout version 2), one split
 * virtqueue, polled from ring 3: no interrupts (avail ring flag NO_INTERRUPT), every request
 * is a 3-descriptor chain (header, data, status) owned by a fixed slot.
 */
#include "tiny.h"
#include "virtio_blk.h"

#define VIRTIO_MAGIC 0x74726976         /* "virt" */
#define VIRTIO_ID_BLOCK 2

#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_STATUS 0x070
#define REG_QUEUE_DESC 0x080
#define REG_QUEUE_DRIVER 0x090
#define REG_QUEUE_DEVICE 0x0a0
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG 0x100

#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_NEEDS_RESET 0x40
#define STATUS_FAILED 0x80

#define F_SEG_MAX (1ULL << 2)
#define F_RO (1ULL << 5)
#define F_BLK_SIZE (1ULL << 6)
#define F_FLUSH (1ULL << 9)
#define F_VERSION_1 (1ULL << 32)

#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define AVAIL_F_NO_INTERRUPT 1

#define QMAX 128

struct vq_desc { u64 addr; u32 len; u16 flags; u16 next; };
struct vq_avail { u16 flags; u16 idx; u16 ring[QMAX]; u16 used_event; };
struct vq_used_elem { u32 id; u32 len; };
struct vq_used { u16 flags; u16 idx; struct vq_used_elem ring[QMAX]; u16 avail_event; };
struct blk_req_hdr { u32 type; u32 reserved; u64 sector; };

static struct vq_desc desc[QMAX] ALIGNED(4096);
static struct vq_avail avail ALIGNED(4096);
static volatile struct vq_used used ALIGNED(4096);
static struct blk_req_hdr hdrs[VBLK_MAX_SLOTS];
static volatile u8 req_status[VBLK_MAX_SLOTS];
static u16 avail_idx;

static u32 rd(const struct vblk *d, u32 reg) { return mmio_read32(d->base + reg); }
static void wr(const struct vblk *d, u32 reg, u32 v) { mmio_write32(d->base + reg, v); }
static void wr64(const struct vblk *d, u32 reg, u64 v)
{
    wr(d, reg, (u32)v);
    wr(d, reg + 4, (u32)(v >> 32));
}

static bool fail(struct vblk *d, const char *why)
{
    wr(d, REG_STATUS, rd(d, REG_STATUS) | STATUS_FAILED);
    kprintf("blk: device at 0x%lx: %s\n", d->base, why);
    return false;
}

static bool vblk_init(struct vblk *d)
{
    wr(d, REG_STATUS, 0);
    for (u32 i = 0; rd(d, REG_STATUS) != 0; i++)
        if (i > 1000000)
            return fail(d, "reset did not complete");
    wr(d, REG_STATUS, STATUS_ACKNOWLEDGE);
    wr(d, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);

    wr(d, REG_DEVICE_FEATURES_SEL, 0);
    u64 offered = rd(d, REG_DEVICE_FEATURES);
    wr(d, REG_DEVICE_FEATURES_SEL, 1);
    offered |= (u64)rd(d, REG_DEVICE_FEATURES) << 32;
    if (!(offered & F_VERSION_1))
        return fail(d, "VIRTIO_F_VERSION_1 not offered");
    d->features = offered & (F_VERSION_1 | F_BLK_SIZE | F_SEG_MAX | F_FLUSH | F_RO);
    wr(d, REG_DRIVER_FEATURES_SEL, 0);
    wr(d, REG_DRIVER_FEATURES, (u32)d->features);
    wr(d, REG_DRIVER_FEATURES_SEL, 1);
    wr(d, REG_DRIVER_FEATURES, (u32)(d->features >> 32));
    wr(d, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!(rd(d, REG_STATUS) & STATUS_FEATURES_OK))
        return fail(d, "device refused the feature set (FEATURES_OK cleared)");

    /* Config space: read until the generation is stable (the device may change it). */
    u32 gen;
    do {
        gen = rd(d, REG_CONFIG_GENERATION);
        d->capacity = rd(d, REG_CONFIG) | (u64)rd(d, REG_CONFIG + 4) << 32;
        d->blk_size = (d->features & F_BLK_SIZE) ? rd(d, REG_CONFIG + 0x14) : 512;
    } while (gen != rd(d, REG_CONFIG_GENERATION));
    if (d->blk_size < 512 || d->blk_size > 4096 || (d->blk_size & (d->blk_size - 1)))
        return fail(d, "unsupported blk_size (need a power of two in 512..4096)");
    d->ro = (d->features & F_RO) != 0;
    d->flush = (d->features & F_FLUSH) != 0;

    wr(d, REG_QUEUE_SEL, 0);
    if (rd(d, REG_QUEUE_READY) != 0)
        return fail(d, "queue 0 already live after reset");
    u32 max = rd(d, REG_QUEUE_NUM_MAX);
    if (max < 3)
        return fail(d, "queue 0 too small (QueueNumMax < 3)");
    u32 qsize = 1;
    while (qsize * 2 <= max && qsize * 2 <= QMAX)
        qsize *= 2;
    d->qsize = (u16)qsize;
    d->slots = qsize / 3 < VBLK_MAX_SLOTS ? qsize / 3 : VBLK_MAX_SLOTS;
    memset(desc, 0, sizeof desc);
    memset(&avail, 0, sizeof avail);
    memset((void *)&used, 0, sizeof used);
    avail.flags = AVAIL_F_NO_INTERRUPT;
    avail_idx = 0;
    for (u32 s = 0; s < d->slots; s++) {
        struct vq_desc *h = &desc[3 * s];
        h[0].addr = (u64)(uintptr_t)&hdrs[s];
        h[0].len = sizeof hdrs[s];
        h[0].flags = DESC_F_NEXT;
        h[0].next = (u16)(3 * s + 1);
        h[1].flags = DESC_F_NEXT;
        h[1].next = (u16)(3 * s + 2);
        h[2].addr = (u64)(uintptr_t)&req_status[s];
        h[2].len = 1;
        h[2].flags = DESC_F_WRITE;
    }
    wr(d, REG_QUEUE_NUM, qsize);
    wr64(d, REG_QUEUE_DESC, (u64)(uintptr_t)desc);
    wr64(d, REG_QUEUE_DRIVER, (u64)(uintptr_t)&avail);
    wr64(d, REG_QUEUE_DEVICE, (u64)(uintptr_t)&used);
    wr(d, REG_QUEUE_READY, 1);
    wr(d, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    if (rd(d, REG_STATUS) & (STATUS_NEEDS_RESET | STATUS_FAILED))
        return fail(d, "device failed after DRIVER_OK");
    return true;
}

/* One `virtio_mmio.device=<size>@<addr>:<irq>[:<id>]` token. */
static bool parse_device(const char *v, size_t len, u64 *addr, u64 *size)
{
    size_t at = 0, colon;
    while (at < len && v[at] != '@')
        at++;
    colon = at;
    while (colon < len && v[colon] != ':')
        colon++;
    return at < len && parse_size(v, at, size) && parse_u64(v + at + 1, colon - at - 1, addr);
}

bool vblk_open(u32 want, struct vblk *d)
{
    size_t pos = 0, len;
    const char *v;
    u32 found = 0;
    while (cmdline_next(boot.cmdline, "virtio_mmio.device", &pos, &v, &len)) {
        u64 addr, size;
        if (!parse_device(v, len, &addr, &size) || size < 0x200 || addr >= 0x100000000ULL ||
            size > 0x100000000ULL - addr) {
            kprintf("blk: ignoring malformed or unmapped virtio_mmio.device entry\n");
            continue;
        }
        if (mmio_read32(addr + REG_MAGIC) != VIRTIO_MAGIC || mmio_read32(addr + REG_DEVICE_ID) != VIRTIO_ID_BLOCK)
            continue;
        if (found++ != want)
            continue;
        memset(d, 0, sizeof *d);
        d->base = addr;
        if (mmio_read32(addr + REG_VERSION) != 2) {
            kprintf("blk: device at 0x%lx is legacy virtio-mmio (version %u); only version 2 is supported\n",
                    addr, mmio_read32(addr + REG_VERSION));
            return false;
        }
        return vblk_init(d);
    }
    kprintf("blk: no virtio-blk device %u (found %u)\n", want, found);
    return false;
}

void vblk_queue(struct vblk *d, u32 slot, u32 type, u64 sector, u64 buf, u32 bytes)
{
    hdrs[slot].type = type;
    hdrs[slot].reserved = 0;
    hdrs[slot].sector = sector;
    req_status[slot] = 0xff;                 /* a device that never writes status is caught */
    struct vq_desc *h = &desc[3 * slot];
    if (type == VBLK_T_FLUSH) {
        h[0].next = (u16)(3 * slot + 2);     /* no data descriptor */
    } else {
        h[0].next = (u16)(3 * slot + 1);
        h[1].addr = buf;
        h[1].len = bytes;
        h[1].flags = DESC_F_NEXT | (type == VBLK_T_IN ? DESC_F_WRITE : 0);
    }
    avail.ring[avail_idx % d->qsize] = (u16)(3 * slot);
    avail_idx++;
}

int vblk_run(struct vblk *d, u64 timeout_cycles)
{
    barrier();
    *(volatile u16 *)&avail.idx = avail_idx;
    barrier();
    wr(d, REG_QUEUE_NOTIFY, 0);
    u64 start = rdtsc();
    while (used.idx != avail_idx) {
        if (rdtsc() - start > timeout_cycles)
            return -1;
        cpu_relax();
    }
    barrier();
    return 0;
}

u8 vblk_status(u32 slot) { return req_status[slot]; }
