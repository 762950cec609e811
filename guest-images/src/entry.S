/*
 * Entry points and every ring-0 structure of the tiny kernel.
 *
 * Three ways in, all converging on bsp_entry64:
 *   KERNEL_BASE + 0x000  32-bit boot protocol entry (ESI = boot_params), also used by setup.S
 *   pvh_entry            PVH (Xen ELF note 18): 32-bit, paging off, EBX = hvm_start_info
 *   KERNEL_BASE + 0x200  64-bit boot protocol entry (RSI = boot_params, identity paging on)
 * APs come in through ap_trampoline (copied to a low page, real mode) -> ap_entry32 -> ap_entry64.
 *
 * Ring-0 code is emulated on the test hosts (~2 us per instruction), so everything here is
 * straight-line: the GDT, TSSes, IDT and the 0-4 GiB identity page tables are assembled as
 * constants at fixed offsets (layout.h), and the CPU drops to ring 3 after a few dozen
 * instructions.
 */
#include "layout.h"

#define CR0_PE    0x00000001
#define CR0_PG    0x80000000
#define CR4_PAE   0x00000020
#define MSR_EFER  0xc0000080
#define EFER_LME  0x00000100

	.section .head, "awx"

/* ---------------------------------------------------------------- 32-bit entries */
	.code32
	.globl _start
_start:
linux32_entry:
	cli
	lgdtl	gdt_ptr
	movl	$SEL_KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%esi, boot_info_addr
	movl	$0, boot_info_addr + 4
	movl	$BOOT_LINUX, boot_kind
	jmp	bsp_long_mode32

	.org	0x40
	.globl pvh_entry
pvh_entry:
	cli
	lgdtl	gdt_ptr
	movl	$SEL_KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%ebx, boot_info_addr
	movl	$0, boot_info_addr + 4
	movl	$BOOT_PVH, boot_kind
bsp_long_mode32:
	movl	$bsp_entry64, %edi
	/* fall through */

/* Enable PAE paging with the static tables and long mode, then far-jump to %edi (64-bit). */
enter_long_mode32:
	movl	%cr4, %eax
	orl	$CR4_PAE, %eax
	movl	%eax, %cr4
	movl	$(KERNEL_BASE + OFF_PML4), %eax
	movl	%eax, %cr3
	movl	$MSR_EFER, %ecx
	rdmsr
	orl	$EFER_LME, %eax
	wrmsr
	movl	%cr0, %eax
	orl	$(CR0_PG | CR0_PE), %eax
	movl	%eax, %cr0
	movl	%edi, lm_target
	ljmpl	*lm_target

/* APs arrive here from the real-mode trampoline with our GDT loaded and CR0.PE set. */
ap_entry32:
	movl	$SEL_KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	$ap_entry64, %edi
	jmp	enter_long_mode32

/* ---------------------------------------------------------------- 64-bit entries */
	.code64
	.org	OFF_ENTRY64
linux64_entry:
	.globl linux64_entry_check
linux64_entry_check:
	cli
	movq	%rsi, boot_info_addr(%rip)
	movl	$BOOT_LINUX, boot_kind(%rip)
	leaq	bsp_r0_stack_top(%rip), %rsp
	movq	$(KERNEL_BASE + OFF_PML4), %rax
	movq	%rax, %cr3
	lgdt	gdt_ptr(%rip)
	pushq	$SEL_KCODE64
	leaq	bsp_entry64(%rip), %rax
	pushq	%rax
	lretq

bsp_entry64:
	movl	$SEL_KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs
	leaq	bsp_r0_stack_top(%rip), %rsp
	movw	$SEL_TSS0, %ax
	ltr	%ax
	lidt	idt_ptr(%rip)
	call	ring0_bsp_setup
	xorl	%edi, %edi
	leaq	r3_stacks + R3_STACK_SIZE - 8(%rip), %rsi
	leaq	bsp_main(%rip), %rdx
	jmp	enter_ring3

ap_entry64:
	movl	$SEL_KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs
	movl	ap_boot_index(%rip), %edi
	leal	1(%rdi), %eax
	shlq	$12, %rax			/* R0_STACK_SIZE == 4096 */
	leaq	r0_stacks(%rip), %rsp
	addq	%rax, %rsp
	movl	%edi, %eax
	shll	$4, %eax
	addl	$SEL_TSS0, %eax
	ltr	%ax
	lidt	idt_ptr(%rip)
	leal	1(%rdi), %eax
	shlq	$14, %rax			/* R3_STACK_SIZE == 16384 */
	leaq	r3_stacks - 8(%rip), %rsi
	addq	%rax, %rsi
	leaq	ap_main(%rip), %rdx
	/* fall through */

/* iretq to ring 3 at %rdx with stack %rsi, IOPL=3, IF=0; %rdi is passed through. */
enter_ring3:
	pushq	$(SEL_UDATA | 3)
	pushq	%rsi
	pushq	$0x3002
	pushq	$(SEL_UCODE64 | 3)
	pushq	%rdx
	iretq

/* Exception frame on entry: vector, error code, rip, cs, rflags, rsp, ss. */
exc_common:
	cld
	movq	%rsp, %rdi
	andq	$-16, %rsp
	call	exception_report
1:	hlt
	jmp	1b

/* IRQ self-test handler (ring 0 only; ring 3 always runs with IF=0). */
irqtest_handler:
	pushq	%rax
	pushq	%rdx
	movw	$0x3fa, %dx			/* reading IIR acknowledges the THRE interrupt */
	inb	%dx, %al
	movl	$0xfee000b0, %eax		/* LAPIC EOI */
	movl	$0, (%rax)
	movl	$1, irq_seen(%rip)
	popq	%rdx
	popq	%rax
	iretq

/* ---------------------------------------------------------------- AP trampoline (copied) */
	.code16
	.globl ap_trampoline, ap_trampoline_end
ap_trampoline:
	cli
	movw	%cs, %ax
	movw	%ax, %ds
	lgdtl	(tramp_gdt_ptr - ap_trampoline)
	movl	%cr0, %eax
	orl	$CR0_PE, %eax
	movl	%eax, %cr0
	ljmpl	$SEL_KCODE32, $ap_entry32
	.balign	8
tramp_gdt_ptr:
	.word	GDT_ENTRIES * 8 - 1
	.long	KERNEL_BASE + OFF_GDT
ap_trampoline_end:
	.code64

/* ---------------------------------------------------------------- exception stubs */
#define HAS_ERRCODE(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)
	.set	vec, 0
	.rept	32
	.org	OFF_EXC_STUBS + vec * 16
	.if	HAS_ERRCODE(vec) == 0
	pushq	$0
	.endif
	pushq	$vec
	jmp	exc_common
	.set	vec, vec + 1
	.endr

	.org	OFF_IRQ_STUB
	jmp	irqtest_handler
	.org	OFF_SPURIOUS
	iretq

/* ---------------------------------------------------------------- identity page tables */
	.org	OFF_PML4
	.globl	boot_pml4
boot_pml4:
	.quad	KERNEL_BASE + OFF_PDPT + (PTE_P | PTE_RW | PTE_US)
	.fill	511, 8, 0

	.org	OFF_PDPT
	.globl	boot_pdpt
boot_pdpt:
	.quad	KERNEL_BASE + OFF_PD + 0x0000 + (PTE_P | PTE_RW | PTE_US)
	.quad	KERNEL_BASE + OFF_PD + 0x1000 + (PTE_P | PTE_RW | PTE_US)
	.quad	KERNEL_BASE + OFF_PD + 0x2000 + (PTE_P | PTE_RW | PTE_US)
	.quad	KERNEL_BASE + OFF_PD + 0x3000 + (PTE_P | PTE_RW | PTE_US)
	.fill	508, 8, 0			/* >= 4 GiB: filled from ring 3 (paging.c) */

	.org	OFF_PD
	.set	addr, 0
	.rept	1536				/* 0-3 GiB: RAM, write-back */
	.quad	addr + (PTE_P | PTE_RW | PTE_US | PTE_PS)
	.set	addr, addr + 0x200000
	.endr
	.rept	512				/* 3-4 GiB: MMIO hole, uncached */
	.quad	addr + (PTE_P | PTE_RW | PTE_US | PTE_PWT | PTE_PCD | PTE_PS)
	.set	addr, addr + 0x200000
	.endr

/* ---------------------------------------------------------------- TSSes */
	.org	OFF_TSS
	.set	cpu, 0
	.rept	MAX_CPUS
	.org	OFF_TSS + cpu * TSS_STRIDE
	.long	0
	.quad	r0_stacks + (cpu + 1) * R0_STACK_SIZE	/* rsp0 */
	.fill	22, 4, 0				/* rsp1, rsp2, ist1-7, reserved: up to offset 100 */
	.word	0
	.word	OFF_IOMAP - OFF_TSS - cpu * TSS_STRIDE	/* I/O bitmap: the shared one */
	.set	cpu, cpu + 1
	.endr

/* ---------------------------------------------------------------- GDT */
	.org	OFF_GDT
gdt:
	.quad	0
	.quad	0x00af9a000000ffff		/* 0x08 kernel code, 64-bit */
	.quad	0x00cf92000000ffff		/* 0x10 kernel data */
	.quad	0x00cf9a000000ffff		/* 0x18 kernel code, 32-bit (mode switches) */
	.quad	0x00affa000000ffff		/* 0x20 user code, 64-bit, DPL 3 */
	.quad	0x00cff2000000ffff		/* 0x28 user data, DPL 3 */
	.set	cpu, 0
	.rept	MAX_CPUS			/* 0x30 + 16k: TSS of CPU k */
	.set	tss, KERNEL_BASE + OFF_TSS + cpu * TSS_STRIDE
	.word	OFF_IOMAP - OFF_TSS - cpu * TSS_STRIDE + IOMAP_BYTES	/* limit: through the terminator */
	.word	tss & 0xffff
	.byte	(tss >> 16) & 0xff
	.byte	0x89
	.byte	0
	.byte	(tss >> 24) & 0xff
	.long	0
	.long	0
	.set	cpu, cpu + 1
	.endr

/* ---------------------------------------------------------------- IDT */
.macro	gate handler
	.word	(\handler) & 0xffff
	.word	SEL_KCODE64
	.byte	0
	.byte	0x8e
	.word	((\handler) >> 16) & 0xffff
	.long	0
	.long	0
.endm
	.org	OFF_IDT
	.set	vec, 0
	.rept	32
	.set	handler, KERNEL_BASE + OFF_EXC_STUBS + vec * 16
	gate	handler
	.set	vec, vec + 1
	.endr
	.fill	(IRQTEST_VECTOR - 32) * 2, 8, 0
	.set	handler, KERNEL_BASE + OFF_IRQ_STUB
	gate	handler
	.fill	(SPURIOUS_VECTOR - IRQTEST_VECTOR - 1) * 2, 8, 0
	.set	handler, KERNEL_BASE + OFF_SPURIOUS
	gate	handler

/*
 * I/O permission bitmap: all zero = every port below 0x2000 allowed from ring 3. IOPL=3 alone
 * is not enough on the PVM host: it runs guest ring 3 with IOPL 0 (the RFLAGS an exception
 * frame shows) and then consults this bitmap.
 */
	.org	OFF_IOMAP
	.fill	IOMAP_BYTES, 1, 0
	.byte	0xff

/* ---------------------------------------------------------------- descriptors and boot vars */
	.balign	16
	.word	0
gdt_ptr:
	.word	GDT_ENTRIES * 8 - 1
	.quad	KERNEL_BASE + OFF_GDT
	.balign	16
	.word	0
idt_ptr:
	.word	IDT_ENTRIES * 16 - 1
	.quad	KERNEL_BASE + OFF_IDT

	.balign	8
lm_target:
	.long	0
	.word	SEL_KCODE64
	.balign	8
	.globl	boot_info_addr, boot_kind, irq_seen, ap_boot_index
boot_info_addr:	.quad	0
boot_kind:	.long	0
irq_seen:	.long	0
ap_boot_index:	.long	0

/* ---------------------------------------------------------------- PVH ELF note */
	.section .note.Xen, "a", @note
	.balign	4
	.long	4				/* name size */
	.long	8				/* descriptor size */
	.long	18				/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.balign	4
	.quad	pvh_entry
	.balign	4

/* ---------------------------------------------------------------- stacks (never zeroed) */
	.section .stacks, "aw", @nobits
	.balign	4096
	.globl	r0_stacks, r3_stacks
r0_stacks:
	.skip	R0_STACK_SIZE * MAX_CPUS
	.set	bsp_r0_stack_top, r0_stacks + R0_STACK_SIZE
r3_stacks:
	.skip	R3_STACK_SIZE * MAX_CPUS
