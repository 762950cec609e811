/*
 * tiny.blk=<op>[,<op>...] workloads over the virtio-blk device tiny.blk_dev (default 0):
 *   write:<MiB>   write the LBA pattern over the first N MiB, read it back, verify, print CRC32
 *   read:<MiB>    read the first N MiB, print their CRC32
 *   seqread:<MiB> / seqwrite:<MiB>   timed sequential I/O in 64 KiB requests, 32 in flight
 *   randread:<n>  n timed 4 KiB reads at pseudo-random 4 KiB-aligned offsets
 *   randwrite:<n> n timed 4 KiB writes of the LBA pattern at pseudo-random 4 KiB-aligned offsets
 *   flush         one FLUSH request
 * Pattern: the 8-byte little-endian word at disk byte offset o is o ^ 0x594e495400000000.
 */
#include "tiny.h"
#include "virtio_blk.h"

#define PATTERN_KEY 0x594e495400000000ULL
#define TIMEOUT_S 30

static struct vblk dev;
static u64 timeout_cycles;

static u64 dma_buf(u32 slot) { return free_base + (u64)slot * VBLK_SLOT_BYTES; }

static void fill_pattern(u64 buf, u64 disk_off, u32 bytes)
{
    u64 *p = (u64 *)(uintptr_t)buf;
    for (u32 i = 0; i < bytes / 8; i++)
        p[i] = (disk_off + i * 8ULL) ^ PATTERN_KEY;
}

/* Byte offset of the first mismatch, or ~0. */
static u64 check_pattern(u64 buf, u64 disk_off, u32 bytes)
{
    const u64 *p = (const u64 *)(uintptr_t)buf;
    for (u32 i = 0; i < bytes / 8; i++)
        if (p[i] != ((disk_off + i * 8ULL) ^ PATTERN_KEY))
            return disk_off + i * 8ULL;
    return ~0ULL;
}

static const char *op_name(u32 type) { return type == VBLK_T_IN ? "read" : type == VBLK_T_OUT ? "write" : "flush"; }

/* Runs the queued batch; on any bad status prints it and returns false. */
static bool run_batch(u32 n, u32 type, const u64 *sectors)
{
    if (vblk_run(&dev, timeout_cycles) != 0) {
        kprintf("blk: timeout %s sector=%lu\n", op_name(type), sectors[0]);
        return false;
    }
    for (u32 s = 0; s < n; s++) {
        u8 st = vblk_status(s);
        if (st == VBLK_S_OK)
            continue;
        if (st == VBLK_S_IOERR)
            kprintf("blk: ioerr %s sector=%lu\n", op_name(type), sectors[s]);
        else if (st == VBLK_S_UNSUPP)
            kprintf("blk: unsupp %s sector=%lu\n", op_name(type), sectors[s]);
        else
            kprintf("blk: bad status %u %s sector=%lu\n", st, op_name(type), sectors[s]);
        return false;
    }
    return true;
}

enum seq_mode { SEQ_WRITE, SEQ_READ_CRC, SEQ_READ_VERIFY, SEQ_READ_RAW };

/* Sequential pass over [0, bytes) in slot-sized requests. */
static bool seq_pass(u64 bytes, enum seq_mode mode, u32 *crc, u64 *bad)
{
    u32 type = mode == SEQ_WRITE ? VBLK_T_OUT : VBLK_T_IN;
    u64 sectors[VBLK_MAX_SLOTS];
    for (u64 off = 0; off < bytes;) {
        u32 n = 0;
        for (; n < dev.slots && off < bytes; n++) {
            u32 len = bytes - off < VBLK_SLOT_BYTES ? (u32)(bytes - off) : VBLK_SLOT_BYTES;
            if (mode == SEQ_WRITE)
                fill_pattern(dma_buf(n), off, len);
            sectors[n] = off / 512;
            vblk_queue(&dev, n, type, off / 512, dma_buf(n), len);
            off += len;
        }
        if (!run_batch(n, type, sectors))
            return false;
        if (mode == SEQ_READ_CRC || mode == SEQ_READ_VERIFY) {
            u64 boff = sectors[0] * 512;
            for (u32 s = 0; s < n; s++) {
                u32 len = bytes - boff < VBLK_SLOT_BYTES ? (u32)(bytes - boff) : VBLK_SLOT_BYTES;
                if (mode == SEQ_READ_VERIFY && *bad == ~0ULL)
                    *bad = check_pattern(dma_buf(s), boff, len);
                *crc = crc32_update(*crc, (const void *)(uintptr_t)dma_buf(s), len);
                boff += len;
            }
        }
    }
    return true;
}

static bool fits(u64 bytes, const char *op)
{
    if (bytes == 0 || bytes > dev.capacity * 512) {
        kprintf("blk: %s of %lu bytes does not fit the disk (%lu sectors)\n", op, bytes, dev.capacity);
        return false;
    }
    if (bytes % dev.blk_size) {
        kprintf("blk: %s size is not a multiple of the block size %u\n", op, dev.blk_size);
        return false;
    }
    return true;
}

static bool writable(void)
{
    if (dev.ro)
        kprintf("blk: ro\n");
    return !dev.ro;
}

static bool op_write(u64 mib)
{
    u64 bytes = mib << 20, bad = ~0ULL;
    u32 crc = 0;
    if (!fits(bytes, "write") || !writable())
        return false;
    if (!seq_pass(bytes, SEQ_WRITE, &crc, &bad) || !seq_pass(bytes, SEQ_READ_VERIFY, &crc, &bad))
        return false;
    if (bad != ~0ULL) {
        kprintf("blk: write %lu MiB verify FAILED sector=%lu\n", mib, bad / 512);
        return false;
    }
    kprintf("blk: write %lu MiB ok crc=%08x\n", mib, crc);
    return true;
}

static bool op_read(u64 mib)
{
    u64 bytes = mib << 20, bad = ~0ULL;
    u32 crc = 0;
    if (!fits(bytes, "read") || !seq_pass(bytes, SEQ_READ_CRC, &crc, &bad))
        return false;
    kprintf("blk: read %lu MiB crc=%08x\n", mib, crc);
    return true;
}

static bool op_timed_seq(const char *kind, u64 mib, bool write)
{
    u64 bytes = mib << 20, bad = ~0ULL;
    u32 crc = 0;
    if (!fits(bytes, kind) || (write && !writable()))
        return false;
    u64 t0 = rdtsc();
    if (!seq_pass(bytes, write ? SEQ_WRITE : SEQ_READ_RAW, &crc, &bad))
        return false;
    kprintf("blk: %s %lu bytes %lu us\n", kind, bytes, tsc_to_us(rdtsc() - t0));
    return true;
}

/* n timed 4 KiB requests at pseudo-random aligned offsets; writes carry the LBA pattern. */
static bool op_random(const char *name, u64 count, bool write)
{
    const u32 len = 4096;
    const u32 type = write ? VBLK_T_OUT : VBLK_T_IN;
    u64 blocks = dev.capacity * 512 / len, rng = 0x9e3779b97f4a7c15ULL, sectors[VBLK_MAX_SLOTS];
    if (count == 0 || blocks == 0 || len % dev.blk_size) {
        kprintf("blk: %s needs a count > 0 and a disk of at least 4 KiB\n", name);
        return false;
    }
    if (write && dev.ro) {
        kprintf("blk: ro\n");
        return false;
    }
    u64 t0 = rdtsc();
    for (u64 done = 0; done < count;) {
        u32 n = 0;
        for (; n < dev.slots && done < count; n++, done++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            sectors[n] = (rng % blocks) * (len / 512);
            if (write)
                fill_pattern(dma_buf(n), sectors[n] * 512, len);
            vblk_queue(&dev, n, type, sectors[n], dma_buf(n), len);
        }
        if (!run_batch(n, type, sectors))
            return false;
    }
    kprintf("blk: %s %lu bytes %lu us\n", name, count * len, tsc_to_us(rdtsc() - t0));
    return true;
}

static bool op_flush(void)
{
    u64 sector = 0;
    if (!dev.flush) {
        kprintf("blk: flush unsupported\n");
        return false;
    }
    vblk_queue(&dev, 0, VBLK_T_FLUSH, 0, 0, 0);
    if (!run_batch(1, VBLK_T_FLUSH, &sector))
        return false;
    kprintf("blk: flush ok\n");
    return true;
}

static bool run_op(const char *op, size_t len)
{
    size_t colon = 0;
    while (colon < len && op[colon] != ':')
        colon++;
    u64 arg = 0;
    bool has_arg = colon < len && parse_u64(op + colon + 1, len - colon - 1, &arg);
#define IS(name) (colon == sizeof(name) - 1 && memcmp(op, name, colon) == 0)
    if (IS("flush") && colon == len)
        return op_flush();
    if (!has_arg || arg > (1ULL << 24)) {
        kprintf("blk: bad operation (want write:<MiB>, read:<MiB>, seqread:<MiB>, seqwrite:<MiB>, randread:<n>, randwrite:<n>, flush)\n");
        return false;
    }
    if (IS("write"))
        return op_write(arg);
    if (IS("read"))
        return op_read(arg);
    if (IS("seqread"))
        return op_timed_seq("seqread", arg, false);
    if (IS("seqwrite"))
        return op_timed_seq("seqwrite", arg, true);
    if (IS("randread"))
        return op_random("randread", arg, false);
    if (IS("randwrite"))
        return op_random("randwrite", arg, true);
#undef IS
    kprintf("blk: unknown operation\n");
    return false;
}

bool blk_run(const char *spec, size_t len)
{
    u64 index = 0;
    cmdline_u64("tiny.blk_dev", &index);
    if (!ram_contains(free_base, (u64)VBLK_MAX_SLOTS * VBLK_SLOT_BYTES)) {
        kprintf("blk: no RAM for I/O buffers at 0x%lx\n", free_base);
        return false;
    }
    tsc_calibrate();
    timeout_cycles = ms_to_tsc(TIMEOUT_S * 1000ULL);
    if (!vblk_open((u32)index, &dev))
        return false;
    kprintf("blk: dev%lu at 0x%lx capacity=%lu sectors blk_size=%u ro=%u flush=%u\n", index, dev.base,
            dev.capacity, dev.blk_size, dev.ro, dev.flush);
    for (size_t start = 0; start < len;) {
        size_t end = start;
        while (end < len && spec[end] != ',')
            end++;
        if (!run_op(spec + start, end - start))
            return false;
        start = end + 1;
    }
    return true;
}
