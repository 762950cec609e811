/*
 * RAM above 4 GiB: the static tables (entry.S) cover 0-4 GiB; higher GiBs get 2 MiB-page
 * directories here, from ring 3 (the page tables are identity-mapped and user-writable).
 * Only not-present PDPT entries are filled, and x86 never caches not-present entries, so no
 * TLB flush (a ring-0 instruction) is needed.
 */
#include "tiny.h"

extern u64 boot_pdpt[512];          /* entry.S */
static u64 pd_pool[HIGH_MAP_LIMIT_GIB - 4][512] ALIGNED(4096);

u64 map_high_ram(u64 top)
{
    u64 limit = (u64)HIGH_MAP_LIMIT_GIB << 30;
    if (top > limit)
        top = limit;
    for (u64 g = 4; (g << 30) < top; g++) {
        if (boot_pdpt[g] & PTE_P)
            continue;
        u64 *pd = pd_pool[g - 4];
        for (u64 i = 0; i < 512; i++)
            pd[i] = (g << 30) + (i << 21) + (PTE_P | PTE_RW | PTE_US | PTE_PS);
        barrier();
        boot_pdpt[g] = (u64)(uintptr_t)pd + (PTE_P | PTE_RW | PTE_US);
    }
    return top < (4ULL << 30) ? (4ULL << 30) : top;
}
