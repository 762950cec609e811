/*
 * TSC calibration, once: the hypervisor's TSC-frequency leaf (0x40000010, KVM/VMware convention)
 * when present, else kvmclock's scale factors, else PIT channel 0 (IOPL=3 lets ring 3 drive it).
 */
#include "tiny.h"


#define PIT_HZ 1193182ULL
#define PIT_COUNT 59659u            /* 50 ms */

u64 tsc_khz;

static u64 khz_from_cpuid(void)
{
    u32 a, b, c, d;
    cpuid(0x40000000, 0, &a, &b, &c, &d);
    if (a < 0x40000010 || a > 0x4000ffff)
        return 0;
    cpuid(0x40000010, 0, &a, &b, &c, &d);
    return a;
}

/* kvmclock: ring 0 registered `pvclock` (ring0.c); its multiplier/shift give the TSC rate. */
static u64 khz_from_kvmclock(void)
{
    for (u32 spins = 0; spins < 1000000; spins++) {
        u32 version = pvclock.version;
        barrier();
        u32 mul = pvclock.tsc_to_system_mul;
        s8 shift = pvclock.tsc_shift;
        barrier();
        if (version != 0 && (version & 1) == 0 && version == pvclock.version && mul != 0) {
            u64 khz = (1000000ULL << 32) / mul;   /* ns = (tsc << shift) * mul >> 32 */
            return shift >= 0 ? khz >> shift : khz << -shift;
        }
        cpu_relax();
    }
    return 0;
}

/*
 * PIT channel 0 as a square wave (mode 3), its OUT pin read with the read-back command (no port
 * 0x61 gate needed: QEMU microvm has none). Timing one full period between two rising edges
 * cancels the latency of starting the counter. IF=0, so its IRQ 0 goes nowhere.
 */
static u8 pit_out(void)
{
    outb(0x43, 0xe2);                            /* read-back: status of channel 0 */
    return inb(0x40) & 0x80;
}

/* TSC at the next rising edge of OUT, or 0 after `limit` cycles. */
static u64 pit_rising_edge(u64 limit)
{
    u64 start = rdtsc();
    u8 prev = pit_out();
    for (;;) {
        u8 out = pit_out();
        u64 now = rdtsc();
        if (out && !prev)
            return now;
        prev = out;
        if (now - start > limit)
            return 0;
    }
}

/* Median of three single periods: one edge seen late (vCPU descheduled) cannot skew it. */
static u64 khz_from_pit(void)
{
    outb(0x43, 0x36);                            /* channel 0, lo/hi byte, mode 3, binary */
    outb(0x40, PIT_COUNT & 0xff);
    outb(0x40, PIT_COUNT >> 8);
    u64 limit = 2000000000ULL;                   /* > 2 periods even at 10 GHz */
    u64 p[3], prev = pit_rising_edge(limit);
    for (int i = 0; i < 3 && prev; i++) {
        u64 next = pit_rising_edge(limit);
        p[i] = next ? next - prev : 0;
        prev = next;
    }
    outb(0x43, 0x30);                            /* back to a stopped one-shot */
    if (!prev)
        return 0;
    u64 lo = p[0] < p[1] ? p[0] : p[1], hi = p[0] < p[1] ? p[1] : p[0];
    u64 median = p[2] < lo ? lo : p[2] > hi ? hi : p[2];
    return median * PIT_HZ / (PIT_COUNT * 1000ULL);
}

static bool usable(u64 khz) { return khz >= 100000 && khz <= 10000000; }

/* tiny.tsc_source=cpuid|kvmclock|pit forces one source (to test a VMM's PIT, for instance). */
void tsc_calibrate(void)
{
    if (tsc_khz)
        return;
    const char *want, *source = "cpuid";
    size_t wlen = 0;
    if (!cmdline_get(boot.cmdline, "tiny.tsc_source", &want, &wlen))
        wlen = 0;
    bool any = wlen == 0;
    u64 khz = 0;
    if (any || (wlen == 5 && memcmp(want, "cpuid", 5) == 0))
        khz = khz_from_cpuid();
    if (!usable(khz) && (any || (wlen == 8 && memcmp(want, "kvmclock", 8) == 0))) {
        source = "kvmclock";
        khz = khz_from_kvmclock();
    }
    if (!usable(khz) && (any || (wlen == 3 && memcmp(want, "pit", 3) == 0))) {
        source = "pit";
        khz = khz_from_pit();
    }
    if (!usable(khz)) {
        source = "assumed";
        khz = 2000000;
    }
    tsc_khz = khz;
    kprintf("tiny: tsc %lu kHz (%s)\n", tsc_khz, source);
}

u64 tsc_to_us(u64 cycles) { return cycles / tsc_khz * 1000 + cycles % tsc_khz * 1000 / tsc_khz; }
u64 ms_to_tsc(u64 ms) { return ms * tsc_khz; }
