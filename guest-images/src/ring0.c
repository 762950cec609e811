/*
 * The only C code that runs in ring 0: the optional interrupt self-test (before the drop to
 * ring 3, since ring 3 can never come back) and the fatal exception report. Ring 0 is emulated
 * on the test hosts, so this stays short, and it must not rely on .bss (ring 3 clears it later).
 */
#include "tiny.h"

#define LAPIC_BASE 0xfee00000ULL
#define IOAPIC_BASE 0xfec00000ULL
#define COM1 0x3f8

extern u64 boot_info_addr;          /* entry.S */
extern u32 boot_kind;
extern volatile u32 irq_seen;

u32 irq_result KERNEL_DATA = 0;     /* 0 not run, 1 interrupt seen, 2 timed out */

/* kvmclock page (pvclock_vcpu_time_info, 32 bytes) the BSP registers; timer.c reads it. */
struct pvclock_time pvclock KERNEL_DATA ALIGNED(64);

/* One wrmsr: lets ring 3 compute the TSC rate from kvmclock's scale without a PIT wait. */
static void kvmclock_register(void)
{
    u32 a, b, c, d;
    cpuid(0x40000000, 0, &a, &b, &c, &d);
    if (b != 0x4b4d564b || c != 0x564b4d56 || d != 0x4d || a < 0x40000001)   /* "KVMKVMKVM" */
        return;
    cpuid(0x40000001, 0, &a, &b, &c, &d);
    u32 msr = (a & (1u << 3)) ? 0x4b564d01 : (a & 1u) ? 0x12 : 0;
    if (!msr)
        return;
    u64 v = (u64)(uintptr_t)&pvclock | 1;
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

static u64 raw_cmdline(void)
{
    u64 a = boot_info_addr;
    if (a == 0 || a >= 0xfffff000ULL)
        return 0;
    if (boot_kind == BOOT_PVH)
        return *(const u32 *)phys(a) == 0x336ec578 ? *(const u64 *)phys(a + 24) : 0;
    return *(const u32 *)phys(a + 0x228) | ((u64) * (const u32 *)phys(a + 0x0c8) << 32);
}

/* Bounded token search, so a cmdline without a terminator cannot run us off the map. */
static bool raw_cmdline_has(u64 addr, const char *key, size_t klen)
{
    if (addr == 0 || addr >= 0x100000000ULL - 4096)
        return false;
    const char *s = phys(addr);
    for (size_t i = 0; i < 4096 && s[i];) {
        while (i < 4096 && s[i] == ' ')
            i++;
        size_t start = i;
        while (i < 4096 && s[i] && s[i] != ' ')
            i++;
        if (i - start == klen && memcmp(s + start, key, klen) == 0)
            return true;
    }
    return false;
}

static void ioapic_write(u32 reg, u32 v)
{
    mmio_write32(IOAPIC_BASE, reg);
    mmio_write32(IOAPIC_BASE + 0x10, v);
}

/* Route COM1 (GSI 4) through the IOAPIC to this CPU, enable the THRE interrupt, wait for it. */
static void irq_self_test(void)
{
    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    outb(0x21, 0xff);                                   /* 8259s masked: test the IOAPIC path */
    outb(0xa1, 0xff);
    mmio_write32(LAPIC_BASE + 0xf0, 0x100 | SPURIOUS_VECTOR);   /* software-enable the LAPIC */
    mmio_write32(LAPIC_BASE + 0x80, 0);                 /* TPR: accept everything */
    ioapic_write(0x10 + 2 * 4 + 1, (b >> 24) << 24);   /* destination: this CPU */
    ioapic_write(0x10 + 2 * 4, IRQTEST_VECTOR);         /* fixed, physical, edge, unmasked */
    outb(COM1 + 4, 0x0b);                               /* MCR: DTR, RTS, OUT2 (IRQ gate) */
    outb(COM1 + 1, 0x02);                               /* IER: THR empty */
    u64 start = rdtsc();
    __asm__ volatile("sti");
    while (!irq_seen && rdtsc() - start < 2000000000ULL)
        cpu_relax();
    __asm__ volatile("cli");
    outb(COM1 + 1, 0x00);
    ioapic_write(0x10 + 2 * 4, 1u << 16 | IRQTEST_VECTOR);     /* masked again */
    irq_result = irq_seen ? 1 : 2;
}

void ring0_bsp_setup(void)
{
    kvmclock_register();
    if (raw_cmdline_has(raw_cmdline(), "tiny.irqtest", 12))
        irq_self_test();
}

static void print_unlocked(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    kvprintf_unlocked(f, ap);
    va_end(ap);
}

/* frame: vector, error code, rip, cs, rflags, rsp, ss (pushed by the stub and the CPU). */
NORETURN void exception_report(const u64 *frame)
{
    u64 cr2;
    u32 a, b, c, d;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    cpuid(1, 0, &a, &b, &c, &d);
    bool locked = console_trylock(100000);
    static const char fmt[] =
        "tiny: exception %u rip=0x%lx err=0x%lx cr2=0x%lx cs=0x%lx rflags=0x%lx rsp=0x%lx apic=%u\n";
    print_unlocked(fmt, (unsigned)frame[0], frame[2], frame[1], cr2, frame[3], frame[4], frame[5], b >> 24);
    if (locked)
        console_unlock();
    power_off(3);
}

