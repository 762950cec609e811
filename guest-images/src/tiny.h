/* Common declarations of the tiny test kernel (freestanding, x86-64, no SSE). */
#ifndef TINY_H
#define TINY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "layout.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;

#define NORETURN __attribute__((noreturn))
#define ALIGNED(n) __attribute__((aligned(n)))
#define KERNEL_DATA __attribute__((section(".data")))   /* survives the ring-3 .bss clear */

static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}

static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)(uintptr_t)addr; }
static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)(uintptr_t)addr = v; }

/* Reads of guest-physical memory below 4 GiB (identity mapped). */
static inline const void *phys(u64 addr) { return (const void *)(uintptr_t)addr; }

static inline u32 xchg32(volatile u32 *p, u32 v)
{
    __asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v;
}

/* lib.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);

/* console.c: one call = one line, under a spinlock shared by all CPUs. */
void console_init(void);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf_unlocked(const char *fmt, va_list ap);
bool console_trylock(u64 spins);
void console_unlock(void);
NORETURN void power_off(u32 status);
NORETURN void reset_machine(void);

/* bootinfo.c */
#define MAX_E820 128
#define E820_RAM 1
struct mem_range { u64 addr, size; u32 type; };
struct boot_info {
    int kind;                         /* BOOT_PVH or BOOT_LINUX */
    char cmdline[4096];
    struct mem_range map[MAX_E820];
    u32 map_count;
    u64 rsdp;                         /* 0 when the boot data does not say */
    u64 ram_bytes;                    /* sum of usable RAM */
    u64 ram_top;                      /* end of the highest usable RAM range */
    /* Guest-physical ranges the loader's boot data occupies (kept clear of the AP trampoline). */
    struct { u64 addr, size; } used[4];
    u32 used_count;
};
extern struct boot_info boot;
bool bootinfo_parse(void);
bool ram_contains(u64 addr, u64 size);

/* cmdline.c */
bool cmdline_has(const char *cmdline, const char *key);
/* Finds the last `key=value` (or bare `key`) token; val and len describe the value ("" if bare). */
bool cmdline_get(const char *cmdline, const char *key, const char **val, size_t *len);
/* Iterates over every `key=value` token: *pos starts at 0. */
bool cmdline_next(const char *cmdline, const char *key, size_t *pos, const char **val, size_t *len);
bool parse_u64(const char *s, size_t len, u64 *out);
bool parse_size(const char *s, size_t len, u64 *out);   /* with K/M/G suffix */
bool cmdline_u64(const char *key, u64 *out);            /* on boot.cmdline */

/* cpus.c */
extern u32 cpu_count;
extern u32 cpu_apic_ids[MAX_CPUS];   /* [0] is the BSP */
extern const char *cpu_source;
void cpus_discover(void);
void smp_start_aps(void);
extern volatile u32 aps_running;
u64 ap_counter_sum(void);

/* timer.c; pvclock (kvmclock's per-CPU page) is registered by ring0.c */
struct pvclock_time {
    volatile u32 version;
    u32 pad0;
    u64 tsc_timestamp;
    u64 system_time;
    volatile u32 tsc_to_system_mul;
    volatile s8 tsc_shift;
    u8 flags;
    u8 pad[2];
};
extern struct pvclock_time pvclock;

extern u64 tsc_khz;
void tsc_calibrate(void);
u64 tsc_to_us(u64 cycles);
u64 ms_to_tsc(u64 ms);

/* paging.c */
u64 map_high_ram(u64 top);

/* memtest.c */
extern u64 free_base;                 /* first byte of RAM after the kernel, 2 MiB aligned */
#define DMA_AREA_SIZE (4ULL << 20)    /* virtio buffers, right after the kernel */
bool memtest_run(u64 mib, bool loop);

/* ticks.c */
void ticks_init(u64 period_ms, u64 max_ticks);   /* max_ticks 0: forever */
bool ticks_done(void);
bool ticks_poll(void);                /* prints a tick line when one is due; true if printed */
extern volatile u64 tick_count;

/* crc32.c */
u32 crc32_update(u32 crc, const void *data, size_t len);

/* blk.c */
bool blk_run(const char *spec, size_t len);

/* main.c */
extern bool workload_failed;

#endif
