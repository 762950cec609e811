/*
 * tiny.memtest=<MiB>: fill free RAM (after the kernel and its DMA area, continuing into the
 * >4 GiB region when the map has RAM there) with an address-dependent pattern, then verify.
 * tiny.memtest_loop: keep verifying forever (checks that memory survives snapshot/restore).
 * tiny.memtest_rewrite (with _loop): each pass checks every word against the previous pass's
 * pattern and writes the next one, so the guest dirties all of it all the time: a live snapshot
 * that missed one of its writes restores a word one generation old, and the next pass says so.
 * tiny.memtest_from=<MiB>: start at this guest-physical address (e.g. 4096 to test only the RAM
 * above the 32-bit hole without first touching gigabytes below it).
 */
#include "tiny.h"

u64 free_base;

struct span { u64 start, end; };
static struct span spans[MAX_E820];
static u32 span_count;

static inline u64 pattern(u64 addr) { return addr * 0x9e3779b97f4a7c15ULL ^ 0x54494e594d454d54ULL; }
/* Generation `gen` of the pattern (generation 0 is what fill() writes). */
static inline u64 pattern_gen(u64 addr, u64 gen) { return pattern(addr) ^ (gen * 0x100000001b3ULL); }

/* Free RAM in address order, clipped to [free_base + DMA area, mapped top), up to `want` bytes. */
static u64 collect_spans(u64 want, u64 mapped_top)
{
    u64 lo = free_base + DMA_AREA_SIZE, total = 0, from_mib = 0;
    if (cmdline_u64("tiny.memtest_from", &from_mib) && (from_mib << 20) > lo)
        lo = from_mib << 20;
    span_count = 0;
    u64 cursor = lo;
    while (total < want) {
        /* Next RAM range starting at or above the cursor (ranges may come unsorted). */
        u64 best_start = ~0ULL, best_end = 0;
        for (u32 i = 0; i < boot.map_count; i++) {
            const struct mem_range *r = &boot.map[i];
            if (r->type != E820_RAM)
                continue;
            u64 s = r->addr < cursor ? cursor : r->addr, e = r->addr + r->size;
            if (e > mapped_top)
                e = mapped_top;
            s = (s + 4095) & ~4095ULL;
            e &= ~4095ULL;
            if (s < e && s < best_start) {
                best_start = s;
                best_end = e;
            }
        }
        if (best_start == ~0ULL || span_count == MAX_E820)
            break;
        if (best_end - best_start > want - total)
            best_end = best_start + (want - total);
        spans[span_count].start = best_start;
        spans[span_count].end = best_end;
        span_count++;
        total += best_end - best_start;
        cursor = best_end;
    }
    return total;
}

static void fill(void)
{
    for (u32 i = 0; i < span_count; i++)
        for (u64 a = spans[i].start; a < spans[i].end; a += 8)
            *(volatile u64 *)(uintptr_t)a = pattern(a);
}

/* Returns the first bad address, or 0. Polls the ticker every MiB when `ticking`. */
static u64 verify(bool ticking)
{
    for (u32 i = 0; i < span_count; i++) {
        for (u64 a = spans[i].start; a < spans[i].end; a += 8) {
            if (*(volatile u64 *)(uintptr_t)a != pattern(a))
                return a;
            if (ticking && (a & 0xfffff) == 0)
                ticks_poll();
        }
    }
    return 0;
}

/* Checks generation gen-1 and writes generation gen, word by word; returns the first bad address, or 0. */
static u64 rewrite(u64 gen)
{
    for (u32 i = 0; i < span_count; i++) {
        for (u64 a = spans[i].start; a < spans[i].end; a += 8) {
            volatile u64 *w = (volatile u64 *)(uintptr_t)a;
            if (*w != pattern_gen(a, gen - 1))
                return a;
            *w = pattern_gen(a, gen);
            if ((a & 0xfffff) == 0)
                ticks_poll();
        }
    }
    return 0;
}

bool memtest_run(u64 mib, bool loop)
{
    u64 mapped_top = map_high_ram(boot.ram_top);
    u64 want = mib << 20;
    if (mib == 0 || mib > (1ULL << 20)) {
        kprintf("memtest: bad size %lu MiB\n", mib);
        return false;
    }
    u64 got = collect_spans(want, mapped_top);
    if (got < want) {
        kprintf("memtest: not enough free RAM: %lu MiB available\n", got >> 20);
        return false;
    }
    fill();
    kprintf("memtest: filled %lu MiB\n", mib);
    u64 bad = verify(false);
    if (bad) {
        kprintf("memtest: verify FAILED at 0x%lx\n", bad);
        return false;
    }
    kprintf("memtest: verify ok %lu MiB\n", mib);
    if (!loop)
        return true;
    bool rewriting = cmdline_has(boot.cmdline, "tiny.memtest_rewrite");
    for (u64 pass = 1;; pass++) {
        bad = rewriting ? rewrite(pass) : verify(true);
        if (bad) {
            kprintf("memtest: verify FAILED at 0x%lx\n", bad);
            return false;
        }
        kprintf("memtest: pass %lu ok\n", pass);
    }
}
