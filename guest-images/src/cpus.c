/*
 * CPU discovery (ACPI MADT, else the MP table) and AP start-up. AP start-up runs in ring 3:
 * the LAPIC page is mapped user-accessible, so the BSP writes the ICR directly; the APs run
 * their short emulated ring-0 path (trampoline -> long mode -> ring 3) themselves.
 */
#include "tiny.h"

#define LAPIC_BASE 0xfee00000ULL
#define LAPIC_ICR_LO (LAPIC_BASE + 0x300)
#define LAPIC_ICR_HI (LAPIC_BASE + 0x310)
#define ICR_PENDING (1u << 12)

u32 cpu_count = 1;
u32 cpu_apic_ids[MAX_CPUS];
const char *cpu_source = "none";
volatile u32 aps_running;

static volatile u32 cpu_up[MAX_CPUS];
static struct { volatile u64 v; u8 pad[56]; } ap_counters[MAX_CPUS] ALIGNED(64);

extern u32 ap_boot_index;                    /* entry.S */
extern const u8 ap_trampoline[], ap_trampoline_end[];

static bool checksum_ok(const u8 *p, u64 len)
{
    u8 sum = 0;
    for (u64 i = 0; i < len; i++)
        sum = (u8)(sum + p[i]);
    return sum == 0;
}

static bool low_ok(u64 addr, u64 len)
{
    return addr != 0 && addr < 0x100000000ULL && len <= 0x100000000ULL - addr;
}

static void add_cpu(u32 apic_id)
{
    if (apic_id == cpu_apic_ids[0])
        return;
    for (u32 i = 1; i < cpu_count; i++)
        if (cpu_apic_ids[i] == apic_id)
            return;
    if (cpu_count < MAX_CPUS && apic_id < 0xff)
        cpu_apic_ids[cpu_count++] = apic_id;
}

static bool rsdp_valid(u64 addr)
{
    if (!low_ok(addr, 36))
        return false;
    const u8 *p = phys(addr);
    return memcmp(p, "RSD PTR ", 8) == 0 && checksum_ok(p, 20);
}

static u64 find_rsdp(void)
{
    if (rsdp_valid(boot.rsdp))
        return boot.rsdp;
    for (u64 a = 0xe0000; a < 0x100000; a += 16)
        if (rsdp_valid(a))
            return a;
    return 0;
}

static const u8 *acpi_table(u64 addr, const char *sig)
{
    if (!low_ok(addr, 36))
        return NULL;
    const u8 *t = phys(addr);
    u32 len = *(const u32 *)(t + 4);
    if (memcmp(t, sig, 4) != 0 || len < 36 || len > (1u << 20) || !low_ok(addr, len) || !checksum_ok(t, len))
        return NULL;
    return t;
}

static bool parse_madt(const u8 *madt)
{
    u32 len = *(const u32 *)(madt + 4);
    bool any = false;
    for (u32 off = 44; off + 2 <= len;) {
        u8 type = madt[off], elen = madt[off + 1];
        if (elen < 2 || off + elen > len)
            break;
        if (type == 0 && elen >= 8) {                       /* processor local APIC */
            u32 flags = *(const u32 *)(madt + off + 4);
            if (flags & 1) {
                add_cpu(madt[off + 3]);
                any = true;
            }
        } else if (type == 9 && elen >= 16) {              /* processor local x2APIC */
            u32 id = *(const u32 *)(madt + off + 4), flags = *(const u32 *)(madt + off + 8);
            if (flags & 1) {
                add_cpu(id);
                any = true;
            }
        }
        off += elen;
    }
    return any;
}

static bool try_acpi(void)
{
    u64 rsdp = find_rsdp();
    if (!rsdp)
        return false;
    const u8 *r = phys(rsdp);
    u64 sdt;
    u32 entry_size;
    const u8 *root = NULL;
    if (r[15] >= 2 && (sdt = *(const u64 *)(r + 24)) != 0 && (root = acpi_table(sdt, "XSDT")))
        entry_size = 8;
    else if ((root = acpi_table(*(const u32 *)(r + 16), "RSDT")))
        entry_size = 4;
    else
        return false;
    u32 len = *(const u32 *)(root + 4);
    for (u32 off = 36; off + entry_size <= len; off += entry_size) {
        u64 addr = entry_size == 8 ? *(const u64 *)(root + off) : *(const u32 *)(root + off);
        const u8 *madt = acpi_table(addr, "APIC");
        if (madt && parse_madt(madt)) {
            cpu_source = "acpi";
            return true;
        }
    }
    return false;
}

static u64 find_mp_floating(u64 from, u64 to)
{
    for (u64 a = from; a + 16 <= to; a += 16) {
        const u8 *p = phys(a);
        if (memcmp(p, "_MP_", 4) == 0 && p[8] == 1 && checksum_ok(p, 16))
            return a;
    }
    return 0;
}

static bool try_mptable(void)
{
    u64 fp = find_mp_floating(0x9fc00, 0xa0000);
    if (!fp)
        fp = find_mp_floating(0xf0000, 0x100000);
    if (!fp)
        return false;
    u64 cfg = *(const u32 *)phys(fp + 4);
    if (!low_ok(cfg, 44))
        return false;
    const u8 *c = phys(cfg);
    u16 len = *(const u16 *)(c + 4);
    if (memcmp(c, "PCMP", 4) != 0 || len < 44 || !low_ok(cfg, len) || !checksum_ok(c, len))
        return false;
    bool any = false;
    /* Walk by the base table length, as Linux does: some firmware (qboot) leaves the count 0. */
    for (u32 off = 44; off < len;) {
        u8 type = c[off];
        if (type == 0) {
            if (off + 20 > len)
                break;
            if (c[off + 3] & 1) {
                add_cpu(c[off + 1]);
                any = true;
            }
            off += 20;
        } else if (type <= 4) {
            off += 8;
        } else {
            break;
        }
    }
    if (any)
        cpu_source = "mptable";
    return any;
}

void cpus_discover(void)
{
    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    cpu_apic_ids[0] = b >> 24;
    cpu_count = 1;
    if (!try_acpi())
        try_mptable();
}

/* ---------------------------------------------------------------- AP start-up */

static bool overlaps(u64 a, u64 alen, u64 b, u64 blen) { return a < b + blen && b < a + alen; }

/* A low page (below 1 MiB, SIPI vector = page >> 12) that is RAM and holds no boot data. */
static u64 pick_trampoline_page(void)
{
    for (u64 page = 0x8000; page + 0x1000 <= 0x9f000; page += 0x1000) {
        if (!ram_contains(page, 0x1000))
            continue;
        bool busy = false;
        for (u32 i = 0; i < boot.used_count; i++)
            busy |= overlaps(page, 0x1000, boot.used[i].addr, boot.used[i].size);
        if (boot.rsdp)
            busy |= overlaps(page, 0x1000, boot.rsdp, 36);
        if (!busy)
            return page;
    }
    return 0;
}

static void lapic_send_ipi(u32 apic_id, u32 icr_low)
{
    mmio_write32(LAPIC_ICR_HI, apic_id << 24);
    mmio_write32(LAPIC_ICR_LO, icr_low);
    for (u32 spins = 0; (mmio_read32(LAPIC_ICR_LO) & ICR_PENDING) && spins < 1000000; spins++)
        cpu_relax();
}

static bool wait_up(u32 index, u64 cycles)
{
    u64 start = rdtsc();
    while (!cpu_up[index]) {
        if (rdtsc() - start > cycles)
            return false;
        cpu_relax();
    }
    return true;
}

void smp_start_aps(void)
{
    if (cpu_count < 2)
        return;
    u64 page = pick_trampoline_page();
    if (!page) {
        kprintf("tiny: no free low page for the AP trampoline; APs not started\n");
        return;
    }
    memcpy((void *)(uintptr_t)page, ap_trampoline, (size_t)(ap_trampoline_end - ap_trampoline));
    barrier();
    for (u32 k = 1; k < cpu_count; k++) {
        ap_boot_index = k;
        barrier();
        lapic_send_ipi(cpu_apic_ids[k], 0x00004500);                 /* INIT, assert */
        lapic_send_ipi(cpu_apic_ids[k], 0x00004600 | (u32)(page >> 12)); /* STARTUP */
        /* Raw TSC cycles (not yet calibrated): ~0.1 s then ~2 s at 1-3 GHz. */
        if (!wait_up(k, 200000000ULL)) {
            lapic_send_ipi(cpu_apic_ids[k], 0x00004600 | (u32)(page >> 12));
            if (!wait_up(k, 4000000000ULL)) {
                kprintf("tiny: cpu%u (apic %u) did not start\n", k, cpu_apic_ids[k]);
                continue;
            }
        }
        aps_running++;
    }
}

/* Ring 3 entry of every AP (entry.S iretq's here with the AP's index). */
NORETURN void ap_main(u32 index)
{
    kprintf("tiny: cpu%u up\n", index);
    barrier();
    cpu_up[index] = 1;
    for (;;)
        ap_counters[index].v++;
}

u64 ap_counter_sum(void)
{
    u64 sum = 0;
    for (u32 k = 1; k < MAX_CPUS; k++)
        sum += ap_counters[k].v;
    return sum;
}
