/*
 * COM1 output. Every port access is a VM exit (~12 us), so the transmitter is polled once per
 * FIFO burst (16 bytes when the UART reports a working FIFO) rather than once per byte.
 */
#include "tiny.h"

#define COM1 0x3f8
#define UART_THR (COM1 + 0)
#define UART_IER (COM1 + 1)
#define UART_FCR (COM1 + 2)
#define UART_IIR (COM1 + 2)
#define UART_LCR (COM1 + 3)
#define UART_LSR (COM1 + 5)
#define LSR_THRE 0x20

/* In .data, not .bss: the ring-0 exception path may print before ring 3 clears .bss. */
static volatile u32 console_lock KERNEL_DATA = 0;
static u32 fifo_size KERNEL_DATA = 1;

void console_init(void)
{
    outb(UART_IER, 0x00);
    outb(UART_LCR, 0x03);                  /* 8N1 */
    outb(UART_FCR, 0x07);                  /* enable and clear the FIFOs */
    fifo_size = (inb(UART_IIR) & 0xc0) == 0xc0 ? 16 : 1;
}

static void serial_write(const char *s, size_t n)
{
    while (n) {
        u64 spins = 0;
        /* A UART that never drains must not hang the kernel: give up waiting after a while. */
        while (!(inb(UART_LSR) & LSR_THRE) && ++spins < 1000000)
            cpu_relax();
        size_t burst = n < fifo_size ? n : fifo_size;
        for (size_t i = 0; i < burst; i++)
            outb(UART_THR, (u8)s[i]);
        s += burst;
        n -= burst;
    }
}

bool console_trylock(u64 spins)
{
    while (xchg32(&console_lock, 1) != 0) {
        if (spins-- == 0)
            return false;
        cpu_relax();
    }
    return true;
}

void console_unlock(void)
{
    barrier();
    console_lock = 0;
}

struct outbuf { char buf[128]; size_t n; };

static void out_flush(struct outbuf *o)
{
    serial_write(o->buf, o->n);
    o->n = 0;
}

static void out_char(struct outbuf *o, char c)
{
    if (o->n == sizeof o->buf)
        out_flush(o);
    o->buf[o->n++] = c;
}

static void out_number(struct outbuf *o, u64 v, unsigned base, unsigned width, char pad, bool neg)
{
    char tmp[24];
    int i = 0;
    do {
        u64 d = v % base;
        tmp[i++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    if (neg)
        tmp[i++] = '-';
    while ((unsigned)i < width && i < (int)sizeof tmp)
        tmp[i++] = pad;
    while (i)
        out_char(o, tmp[--i]);
}

/* Supports %s %c %d %u %x with optional 0-padding, width, and l/ll length. */
void kvprintf_unlocked(const char *fmt, va_list ap)
{
    struct outbuf o;
    o.n = 0;
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            out_char(&o, *p);
            continue;
        }
        p++;
        char pad = ' ';
        unsigned width = 0, longs = 0;
        if (*p == '0') {
            pad = '0';
            p++;
        }
        while (*p >= '0' && *p <= '9')
            width = width * 10 + (unsigned)(*p++ - '0');
        while (*p == 'l') {
            longs++;
            p++;
        }
        switch (*p) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            while (*s)
                out_char(&o, *s++);
            break;
        }
        case 'c':
            out_char(&o, (char)va_arg(ap, int));
            break;
        case 'd': {
            long long v = longs ? va_arg(ap, long long) : va_arg(ap, int);
            out_number(&o, v < 0 ? (u64)(-v) : (u64)v, 10, width, pad, v < 0);
            break;
        }
        case 'u':
        case 'x': {
            u64 v = longs ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned);
            out_number(&o, v, *p == 'x' ? 16 : 10, width, pad, false);
            break;
        }
        case '%':
            out_char(&o, '%');
            break;
        default:
            out_char(&o, '?');
            if (!*p)
                p--;
            break;
        }
    }
    out_flush(&o);
}

void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    console_trylock(~0ULL);
    kvprintf_unlocked(fmt, ap);
    console_unlock();
    va_end(ap);
}

NORETURN void power_off(u32 status)
{
    outb(0xf4, (u8)status);
    /* No exit device: nothing else to do but stay quiet. */
    for (;;)
        cpu_relax();
}

/*
 * i8042 reset (the tsvmm ABI). Machines without an i8042 (QEMU microvm) ignore it; after ~1 s
 * fall back to a triple fault: ring 3 cannot load an empty IDT, but the IDT is identity-mapped
 * and writable, so clearing its gates makes the next exception escalate to a shutdown.
 */
NORETURN void reset_machine(void)
{
    outb(0x64, 0xfe);
    u64 start = rdtsc();
    while (rdtsc() - start < 3000000000ULL)
        cpu_relax();
    memset((void *)(uintptr_t)(KERNEL_BASE + OFF_IDT), 0, IDT_ENTRIES * 16);
    barrier();
    __asm__ volatile("ud2");
    for (;;)
        cpu_relax();
}
