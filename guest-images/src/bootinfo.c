/*
 * Reads what the loader handed over: PVH hvm_start_info (EBX at the PVH entry) or the Linux
 * zero page (ESI/RSI at the boot protocol entries). The data is copied into `boot` so nothing
 * later depends on the loader's memory. Every pointer and count is checked: only memory below
 * 4 GiB is mapped at this point, and the loader is not trusted to be sane.
 */
#include "tiny.h"

extern u64 boot_info_addr;   /* entry.S */
extern u32 boot_kind;

struct boot_info boot;

#define PVH_MAGIC 0x336ec578
#define LOW_LIMIT 0x100000000ULL

static bool low_range_ok(u64 addr, u64 size)
{
    return addr != 0 && addr < LOW_LIMIT && size <= LOW_LIMIT - addr;
}

static void note_used(u64 addr, u64 size)
{
    if (boot.used_count < sizeof boot.used / sizeof boot.used[0]) {
        boot.used[boot.used_count].addr = addr;
        boot.used[boot.used_count].size = size;
        boot.used_count++;
    }
}

static void copy_cmdline(u64 addr)
{
    boot.cmdline[0] = 0;
    if (!low_range_ok(addr, 1))
        return;
    u64 max = sizeof boot.cmdline - 1;
    if (max > LOW_LIMIT - addr)
        max = LOW_LIMIT - addr;
    size_t n = strnlen(phys(addr), max);
    memcpy(boot.cmdline, phys(addr), n);
    boot.cmdline[n] = 0;
    note_used(addr, n + 1);
}

static void add_range(u64 addr, u64 size, u32 type)
{
    if (boot.map_count >= MAX_E820 || size == 0 || addr + size < addr)
        return;
    struct mem_range *r = &boot.map[boot.map_count++];
    r->addr = addr;
    r->size = size;
    r->type = type;
}

static bool parse_pvh(u64 addr)
{
    if (!low_range_ok(addr, 56))
        return false;
    const u8 *si = phys(addr);
    if (*(const u32 *)si != PVH_MAGIC)
        return false;
    note_used(addr, 56);
    u32 version = *(const u32 *)(si + 4);
    copy_cmdline(*(const u64 *)(si + 24));
    boot.rsdp = *(const u64 *)(si + 32);
    if (version >= 1) {
        u64 map = *(const u64 *)(si + 40);
        u32 entries = *(const u32 *)(si + 48);
        if (entries > MAX_E820)
            entries = MAX_E820;
        if (low_range_ok(map, (u64)entries * 24)) {
            note_used(map, (u64)entries * 24);
            for (u32 i = 0; i < entries; i++) {
                const u8 *e = phys(map + (u64)i * 24);
                add_range(*(const u64 *)e, *(const u64 *)(e + 8), *(const u32 *)(e + 16));
            }
        }
    }
    return true;
}

static bool parse_zero_page(u64 addr)
{
    if (!low_range_ok(addr, 4096))
        return false;
    const u8 *bp = phys(addr);
    if (*(const u32 *)(bp + 0x202) != 0x53726448)   /* "HdrS" */
        return false;
    note_used(addr, 4096);
    u64 cmd = *(const u32 *)(bp + 0x228) | ((u64) * (const u32 *)(bp + 0x0c8) << 32);
    copy_cmdline(cmd);
    boot.rsdp = *(const u64 *)(bp + 0x070);
    u32 entries = bp[0x1e8];
    if (entries > MAX_E820)
        entries = MAX_E820;
    for (u32 i = 0; i < entries; i++) {
        const u8 *e = bp + 0x2d0 + i * 20;
        add_range(*(const u64 *)e, *(const u64 *)(e + 8), *(const u32 *)(e + 16));
    }
    return true;
}

bool bootinfo_parse(void)
{
    boot.kind = (int)boot_kind;
    bool ok = boot.kind == BOOT_PVH ? parse_pvh(boot_info_addr) : parse_zero_page(boot_info_addr);
    if (!ok)
        return false;
    for (u32 i = 0; i < boot.map_count; i++) {
        const struct mem_range *r = &boot.map[i];
        if (r->type != E820_RAM)
            continue;
        boot.ram_bytes += r->size;
        if (r->addr + r->size > boot.ram_top)
            boot.ram_top = r->addr + r->size;
    }
    return true;
}

bool ram_contains(u64 addr, u64 size)
{
    if (addr + size < addr)
        return false;
    for (u32 i = 0; i < boot.map_count; i++) {
        const struct mem_range *r = &boot.map[i];
        if (r->type == E820_RAM && addr >= r->addr && addr + size <= r->addr + r->size)
            return true;
    }
    return false;
}
