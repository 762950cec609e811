/**
 * Initial vCPU state as plain data: registers and special registers for the two entry ABIs,
 * the MSRs a freshly reset CPU should have, FPU defaults, and LAPIC LINT0/LINT1 wiring.
 */
import type { KvmMsrEntry, KvmRegs, KvmSregs } from '../../kvm/types.js';
import { LAPIC_BASE } from '../../memory/layout.js';
import { BOOT_STACK_POINTER } from './addresses.js';
import { SEL_BOOT_CS, SEL_BOOT_DS, SEL_CODE32, SEL_TSS, bootSegment, nullLdt } from './gdt.js';

export const CR0_PE = 1n << 0n;
export const CR0_ET = 1n << 4n;
export const CR0_NE = 1n << 5n;
export const CR0_PG = 1n << 31n;
export const CR4_PAE = 1n << 5n;
export const EFER_LME = 1n << 8n;
export const EFER_LMA = 1n << 10n;
const APIC_BASE_ENABLE = 1n << 11n;
const APIC_BASE_BSP = 1n << 8n;
/** Bit 1 of RFLAGS is reserved and always 1; IF, TF, VM clear. */
const RFLAGS_RESERVED = 2n;

export interface DescriptorTables {
  readonly gdt: { base: bigint; limit: number };
  readonly idt: { base: bigint; limit: number };
}

function zeroRegs(): KvmRegs {
  return {
    rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0n, rbp: 0n,
    r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n,
    rip: 0n, rflags: RFLAGS_RESERVED,
  };
}

/** 64-bit Linux boot protocol: RSI = boot_params, interrupts off. */
export function linux64Regs(entry: number, zeroPage: number): KvmRegs {
  return { ...zeroRegs(), rip: BigInt(entry), rsi: BigInt(zeroPage), rsp: BigInt(BOOT_STACK_POINTER), rbp: BigInt(BOOT_STACK_POINTER) };
}

/** PVH: EBX = hvm_start_info; the ABI defines no stack, a valid one costs nothing. */
export function pvhRegs(entry: number, startInfo: number): KvmRegs {
  return { ...zeroRegs(), rip: BigInt(entry), rbx: BigInt(startInfo), rsp: BigInt(BOOT_STACK_POINTER) };
}

function baseSregs(t: DescriptorTables, bsp: boolean): Omit<KvmSregs, 'cs' | 'cr0' | 'cr3' | 'cr4' | 'efer'> {
  const ds = bootSegment(SEL_BOOT_DS);
  return {
    ds, es: { ...ds }, fs: { ...ds }, gs: { ...ds }, ss: { ...ds },
    tr: bootSegment(SEL_TSS),
    ldt: nullLdt(),
    gdt: { ...t.gdt },
    idt: { ...t.idt },
    cr2: 0n,
    cr8: 0n,
    apic_base: BigInt(LAPIC_BASE) | APIC_BASE_ENABLE | (bsp ? APIC_BASE_BSP : 0n),
    interrupt_bitmap: [0n, 0n, 0n, 0n],
  };
}

/** Long mode with paging on through the identity tables at `cr3`; CS = __BOOT_CS, data = __BOOT_DS. */
export function linux64Sregs(t: DescriptorTables, cr3: bigint): KvmSregs {
  return {
    ...baseSregs(t, true),
    cs: bootSegment(SEL_BOOT_CS),
    cr0: CR0_PE | CR0_ET | CR0_NE | CR0_PG,
    cr3,
    cr4: CR4_PAE,
    efer: EFER_LME | EFER_LMA,
  };
}

/** PVH: 32-bit protected mode, paging off, flat CS/DS, TR a busy 32-bit TSS with base 0 limit 0x67. */
export function pvhSregs(t: DescriptorTables): KvmSregs {
  return {
    ...baseSregs(t, true),
    cs: bootSegment(SEL_CODE32),
    cr0: CR0_PE | CR0_ET,
    cr3: 0n,
    cr4: 0n,
    efer: 0n,
  };
}

export const MSR = {
  IA32_TSC: 0x10,
  IA32_SYSENTER_CS: 0x174,
  IA32_SYSENTER_ESP: 0x175,
  IA32_SYSENTER_EIP: 0x176,
  IA32_MISC_ENABLE: 0x1a0,
  MTRR_DEF_TYPE: 0x2ff,
  STAR: 0xc000_0081,
  LSTAR: 0xc000_0082,
  CSTAR: 0xc000_0083,
  SYSCALL_MASK: 0xc000_0084,
  KERNEL_GS_BASE: 0xc000_0102,
  /** Never written: KVM on these hosts refuses it (see ENVIRONMENT.md). */
  IA32_ARCH_CAPABILITIES: 0x10a,
} as const;

const MISC_ENABLE_FAST_STRING = 1n;
const MTRR_ENABLE = 1n << 11n;
const MTRR_TYPE_WRITE_BACK = 6n;

/** MSRs for every vCPU at boot: syscall MSRs cleared, fast strings on, MTRRs default write-back. */
export function bootMsrs(): KvmMsrEntry[] {
  return [
    { index: MSR.IA32_SYSENTER_CS, data: 0n },
    { index: MSR.IA32_SYSENTER_ESP, data: 0n },
    { index: MSR.IA32_SYSENTER_EIP, data: 0n },
    { index: MSR.STAR, data: 0n },
    { index: MSR.CSTAR, data: 0n },
    { index: MSR.KERNEL_GS_BASE, data: 0n },
    { index: MSR.SYSCALL_MASK, data: 0n },
    { index: MSR.LSTAR, data: 0n },
    { index: MSR.IA32_TSC, data: 0n },
    { index: MSR.IA32_MISC_ENABLE, data: MISC_ENABLE_FAST_STRING },
    { index: MSR.MTRR_DEF_TYPE, data: MTRR_ENABLE | MTRR_TYPE_WRITE_BACK },
  ];
}

/** x87/SSE state after FNINIT + LDMXCSR default: what `KVM_SET_FPU` should be given. */
export interface BootFpu {
  fcw: number;
  fsw: number;
  ftwx: number;
  mxcsr: number;
}

export function bootFpu(): BootFpu {
  return { fcw: 0x37f, fsw: 0, ftwx: 0, mxcsr: 0x1f80 };
}

export const APIC_LVT_LINT0 = 0x350;
export const APIC_LVT_LINT1 = 0x360;
const APIC_DELIVERY_MODE_MASK = 0x700;
export const APIC_MODE_NMI = 0x4;
export const APIC_MODE_EXTINT = 0x7;
/** Size of the register page in `struct kvm_lapic_state`. */
export const KVM_APIC_REG_SIZE = 0x400;

/**
 * Wires LINT0 as ExtINT (the 8259's output, virtual-wire mode) and LINT1 as NMI in a
 * `kvm_lapic_state` register page, as a PC's firmware does; other LVT bits are kept.
 */
export function setLapicLint(lapicBytes: Uint8Array): void {
  if (lapicBytes.length < KVM_APIC_REG_SIZE) throw new RangeError(`LAPIC state is ${lapicBytes.length} bytes, want ${KVM_APIC_REG_SIZE}`);
  const dv = new DataView(lapicBytes.buffer, lapicBytes.byteOffset, lapicBytes.byteLength);
  const set = (off: number, mode: number): void => {
    dv.setUint32(off, (dv.getUint32(off, true) & ~APIC_DELIVERY_MODE_MASK) | (mode << 8), true);
  };
  set(APIC_LVT_LINT0, APIC_MODE_EXTINT);
  set(APIC_LVT_LINT1, APIC_MODE_NMI);
}
