/*
 * The bzImage's real-mode part: boot sector + boot protocol 2.15 header + a small real-mode
 * setup routine. 64-bit loaders (tsvmm) only read the header and jump to the protected-mode
 * image's 64-bit entry. Loaders that run the real-mode code (QEMU -M pc, qboot) land in
 * start_of_setup, which builds a zero page (header + BIOS e820 map) and enters the kernel's
 * 32-bit boot protocol entry at code32_start with ESI = zero page.
 * SYSSIZE and INIT_SIZE come from the Makefile (sizes of the protected-mode image).
 */
#include "layout.h"

#define SETUP_SECTS 1                  /* real-mode part = (1 + SETUP_SECTS) * 512 bytes */
#define ZP          0x1000             /* zero page built at setup segment:0x1000 */
#define SMAP        0x534d4150

	.code16
	.text
	.globl	_setup
_setup:
	/* Booted from a disk by a BIOS: not supported, just stop. */
	cli
1:	hlt
	jmp	1b

	.org	0x1f1
	.byte	SETUP_SECTS			/* 0x1f1 setup_sects */
	.word	0				/* 0x1f2 root_flags */
	.long	SYSSIZE				/* 0x1f4 syssize (16-byte units) */
	.word	0				/* 0x1f8 ram_size */
	.word	0xffff				/* 0x1fa vid_mode: normal */
	.word	0				/* 0x1fc root_dev */
	.word	0xaa55				/* 0x1fe boot_flag */
	.org	0x200
	.byte	0xeb, start_of_setup - 0x202	/* 0x200 jump */
	.ascii	"HdrS"				/* 0x202 header */
	.word	0x020f				/* 0x206 version 2.15 */
	.long	0				/* 0x208 realmode_swtch */
	.word	0x1000				/* 0x20c start_sys_seg */
	.word	kernel_version - 0x200		/* 0x20e kernel_version */
	.byte	0				/* 0x210 type_of_loader */
	.byte	0x01				/* 0x211 loadflags: LOADED_HIGH */
	.word	0x8000				/* 0x212 setup_move_size */
	.long	KERNEL_BASE			/* 0x214 code32_start */
	.long	0				/* 0x218 ramdisk_image */
	.long	0				/* 0x21c ramdisk_size */
	.long	0				/* 0x220 bootsect_kludge */
	.word	0				/* 0x224 heap_end_ptr */
	.byte	0				/* 0x226 ext_loader_ver */
	.byte	0				/* 0x227 ext_loader_type */
	.long	0				/* 0x228 cmd_line_ptr */
	.long	0x7fffffff			/* 0x22c initrd_addr_max */
	.long	0x200000			/* 0x230 kernel_alignment */
	.byte	0				/* 0x234 relocatable_kernel */
	.byte	21				/* 0x235 min_alignment */
	.word	0x0001				/* 0x236 xloadflags: XLF_KERNEL_64 */
	.long	4095				/* 0x238 cmdline_size */
	.long	0				/* 0x23c hardware_subarch */
	.quad	0				/* 0x240 hardware_subarch_data */
	.long	0				/* 0x248 payload_offset */
	.long	0				/* 0x24c payload_length */
	.quad	0				/* 0x250 setup_data */
	.quad	KERNEL_BASE			/* 0x258 pref_address */
	.long	INIT_SIZE			/* 0x260 init_size */
	.long	0				/* 0x264 handover_offset */
	.long	0				/* 0x268 kernel_info_offset */
	.org	0x26c
header_end:

kernel_version:
	.asciz	"tiny"

/* Real mode, CS = setup segment + 0x20. */
start_of_setup:
	cli
	cld
	movw	%cs, %ax
	subw	$0x20, %ax
	movw	%ax, %ds
	movw	%ax, %es
	/* Zero page: clear it, copy the header the loader filled in. */
	movw	$ZP, %di
	xorl	%eax, %eax
	movw	$1024, %cx
	rep stosl
	movw	$0x1f1, %si
	movw	$(ZP + 0x1f1), %di
	movw	$(header_end - 0x1f1), %cx
	rep movsb
	/* BIOS e820 map into zero page 0x2d0, count at 0x1e8. */
	xorl	%ebx, %ebx
	movw	$(ZP + 0x2d0), %di
	xorw	%bp, %bp
2:	movl	$0xe820, %eax
	movl	$20, %ecx
	movl	$SMAP, %edx
	int	$0x15
	jc	3f
	cmpl	$SMAP, %eax
	jne	3f
	addw	$20, %di
	incw	%bp
	cmpw	$128, %bp
	jae	3f
	testl	%ebx, %ebx
	jnz	2b
3:	movw	%bp, %ax
	movb	%al, (ZP + 0x1e8)
	/* ESI = linear address of the zero page. */
	xorl	%esi, %esi
	movw	%ds, %si
	shll	$4, %esi
	addl	$ZP, %esi
	/* Protected mode on the kernel's own GDT, flat segments, then code32_start. */
	lgdtl	setup_gdt_ptr
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	movw	$SEL_KDATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	ljmpl	$SEL_KCODE32, $KERNEL_BASE

	.balign	8
setup_gdt_ptr:
	.word	GDT_ENTRIES * 8 - 1
	.long	KERNEL_BASE + OFF_GDT

	.org	(SETUP_SECTS + 1) * 512
