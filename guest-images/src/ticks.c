/*
 * `tick <n>` lines every tiny.tick_ms. The counter and the deadline live in guest RAM, so after
 * a snapshot/restore the numbering continues. A TSC that jumps (restore, host migration) only
 * re-arms the deadline: missed ticks are skipped, never printed in a burst, never renumbered.
 */
#include "tiny.h"

volatile u64 tick_count;
static u64 period, next_due, last_seen, limit;
static bool armed;

void ticks_init(u64 period_ms, u64 max_ticks)
{
    if (armed)
        return;
    tsc_calibrate();
    period = ms_to_tsc(period_ms ? period_ms : 1);
    last_seen = rdtsc();
    next_due = last_seen + period;
    limit = max_ticks;
    armed = true;
}

bool ticks_done(void) { return armed && limit != 0 && tick_count >= limit; }

bool ticks_poll(void)
{
    if (!armed || ticks_done())
        return false;
    u64 now = rdtsc();
    if (now < last_seen)                    /* TSC went backwards (restore): re-arm */
        next_due = now + period;
    last_seen = now;
    if (now < next_due)
        return false;
    next_due += period;
    if (now >= next_due)                    /* fell behind (paused, restored): skip, re-arm */
        next_due = now + period;
    u64 n = ++tick_count;
    if (aps_running)
        kprintf("tick %lu ap=%lu\n", n, ap_counter_sum());
    else
        kprintf("tick %lu\n", n);
    return true;
}
