/*
 * The BSP's ring-3 life: read the boot data, print the banner, start the APs, run the
 * workloads the command line asks for, then power off with the requested status.
 */
#include "tiny.h"

extern char __bss_start[], __bss_end[], _end[];
extern u32 irq_result;               /* ring0.c */

bool workload_failed;

static bool cmd_get(const char *key, const char **v, size_t *l) { return cmdline_get(boot.cmdline, key, v, l); }

/* tiny.fault=ud|gp|pf|de: raise an exception in ring 3 to exercise the exception path. */
static void maybe_fault(void)
{
    const char *v;
    size_t l;
    if (!cmd_get("tiny.fault", &v, &l))
        return;
    kprintf("tiny: raising a fault\n");
    if (l == 2 && memcmp(v, "ud", 2) == 0)
        __asm__ volatile("ud2");
    if (l == 2 && memcmp(v, "gp", 2) == 0)
        __asm__ volatile("hlt");                                   /* privileged in ring 3 */
    if (l == 2 && memcmp(v, "pf", 2) == 0)
        (void)*(volatile u64 *)(uintptr_t)0x8000000000ULL;        /* PML4[1]: not present */
    if (l == 2 && memcmp(v, "de", 2) == 0) {
        /* In assembly: gcc folds a C division by a known-zero value into a compare. */
        u32 zero = 0, hi = 0, lo = 1;
        __asm__ volatile("divl %2" : "+a"(lo), "+d"(hi) : "r"(zero));
    }
    kprintf("tiny: unknown fault kind\n");
    workload_failed = true;
}

static void run_workloads(void)
{
    const char *v;
    size_t l;
    u64 n;

    if (cmd_get("tiny.blk", &v, &l) && !blk_run(v, l))
        workload_failed = true;

    bool ticks_on = cmd_get("tiny.ticks", &v, &l);
    u64 ticks_max = 0;
    if (ticks_on && l && !parse_u64(v, l, &ticks_max)) {
        kprintf("tiny: bad tiny.ticks value\n");
        ticks_on = false;
        workload_failed = true;
    }
    u64 tick_ms = 100;
    cmdline_u64("tiny.tick_ms", &tick_ms);

    if (cmd_get("tiny.memtest", &v, &l)) {
        bool loop = cmdline_has(boot.cmdline, "tiny.memtest_loop");
        if (loop && ticks_on)
            ticks_init(tick_ms, ticks_max);
        if (!parse_u64(v, l, &n)) {
            kprintf("memtest: bad size\n");
            workload_failed = true;
        } else if (!memtest_run(n, loop)) {
            workload_failed = true;
        }
    }

    if (ticks_on) {
        ticks_init(tick_ms, ticks_max);
        while (!ticks_done())
            if (!ticks_poll())
                cpu_relax();
    }
}

NORETURN void bsp_main(void)
{
    memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
    console_init();
    if (!bootinfo_parse()) {
        kprintf("tiny: unusable boot data; the loader must pass PVH start_info or a zero page\n");
        power_off(2);
    }
    cpus_discover();
    kprintf("tiny: boot=%s cpus=%u mem=%luMiB cmdline=\"%s\"\n", boot.kind == BOOT_PVH ? "pvh" : "linux",
            cpu_count, (u64)((boot.ram_bytes + (1ULL << 19)) >> 20), boot.cmdline);
    if (irq_result == 1)
        kprintf("tiny: irq ok\n");
    else if (irq_result == 2)
        kprintf("tiny: irq FAILED: no COM1 interrupt through the IOAPIC\n");
    free_base = ((u64)(uintptr_t)_end + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
    smp_start_aps();
    maybe_fault();
    run_workloads();

    if (cmdline_has(boot.cmdline, "tiny.reset")) {
        kprintf("tiny: reset\n");
        reset_machine();
    }
    u64 status = 0;
    cmdline_u64("tiny.exit", &status);
    if (workload_failed)
        status = 1;
    kprintf("tiny: exit %lu\n", status);
    power_off((u32)status);
}
