/*
 * Fixed layout of the tiny kernel, shared by the assembly entry code and the C code.
 * Everything ring 0 needs (GDT, TSSes, IDT, page tables) sits at fixed offsets from the load
 * address so the assembler can emit the descriptors as constants: no ring-0 loop builds them
 * at run time, because ring-0 code is emulated (slow) on the hosts this kernel is tested on.
 */
#ifndef TINY_LAYOUT_H
#define TINY_LAYOUT_H

#define KERNEL_BASE      0x100000      /* load address (bzImage pref_address, ELF p_paddr) */
#define MAX_CPUS         32
#define R0_STACK_SIZE    4096          /* per CPU: TSS rsp0, used by exception handlers */
#define R3_STACK_SIZE    16384         /* per CPU: the ring-3 workload stack */

/* Offsets inside the .head section (from KERNEL_BASE). */
#define OFF_ENTRY64      0x200         /* boot protocol: 64-bit entry = load address + 0x200 */
#define OFF_EXC_STUBS    0x800         /* 32 exception stubs, 16 bytes each */
#define OFF_IRQ_STUB     0xa00         /* vector IRQTEST_VECTOR */
#define OFF_SPURIOUS     0xa10         /* vector SPURIOUS_VECTOR */
#define OFF_PML4         0x1000
#define OFF_PDPT         0x2000
#define OFF_PD           0x3000        /* 4 page directories: 0-4 GiB in 2 MiB pages */
#define OFF_TSS          0x7000        /* MAX_CPUS TSSes, TSS_STRIDE bytes apart */
#define TSS_STRIDE       0x80
#define OFF_GDT          0x8000
#define OFF_IDT          0x8400
#define IDT_ENTRIES      48
#define OFF_IOMAP        0x8800        /* I/O permission bitmap shared by all TSSes */
#define IOMAP_BYTES      1024          /* ports 0-0x1fff allowed; higher ports fault */

/* GDT selectors. */
#define SEL_KCODE64      0x08
#define SEL_KDATA        0x10
#define SEL_KCODE32      0x18
#define SEL_UCODE64      0x20
#define SEL_UDATA        0x28
#define SEL_TSS0         0x30          /* CPU k uses SEL_TSS0 + 16*k */
#define GDT_ENTRIES      (6 + 2 * MAX_CPUS)

#define IRQTEST_VECTOR   0x24
#define SPURIOUS_VECTOR  0x2f

#define BOOT_PVH         1
#define BOOT_LINUX       2

/* Page table entry bits. */
#define PTE_P            0x001
#define PTE_RW           0x002
#define PTE_US           0x004
#define PTE_PWT          0x008
#define PTE_PCD          0x010
#define PTE_PS           0x080

/* 0-3 GiB is RAM (write-back); 3-4 GiB is the MMIO hole (virtio, IOAPIC, LAPIC): uncached. */
#define MMIO_HOLE_START  0xc0000000ULL
/* RAM above 4 GiB is mapped at run time (2 MiB pages) up to this limit. */
#define HIGH_MAP_LIMIT_GIB 64

#endif
