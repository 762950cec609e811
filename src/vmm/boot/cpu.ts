/**
 * Initial vCPU state as plain data: registers and special registers for the two entry ABIs,
 * the MSRs a freshly reset CPU should have, FPU defaults, and LAPIC LINT0/LINT1 wiring.
 */
import type { KvmCpuidEntry2, KvmMsrEntry, KvmRegs, KvmSregs } from '../../kvm/types.js';
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

/** XCR0 state components an OS enables once it turns XSAVE on, with the CPUID flag each needs. */
const OS_XSTATE_COMPONENTS: ReadonlyArray<{ bit: bigint; needs: { leaf: number; reg: 'ebx' | 'ecx'; bit: number } | null }> = [
  { bit: 1n << 0n, needs: null }, // x87
  { bit: 1n << 1n, needs: null }, // SSE
  { bit: 1n << 2n, needs: { leaf: 1, reg: 'ecx', bit: 28 } }, // AVX
  { bit: 1n << 5n, needs: { leaf: 7, reg: 'ebx', bit: 16 } }, // AVX-512 opmask
  { bit: 1n << 6n, needs: { leaf: 7, reg: 'ebx', bit: 16 } }, // AVX-512 ZMM_Hi256
  { bit: 1n << 7n, needs: { leaf: 7, reg: 'ebx', bit: 16 } }, // AVX-512 Hi16_ZMM
  { bit: 1n << 9n, needs: { leaf: 7, reg: 'ecx', bit: 3 } }, // PKRU
];
const LEAF1_ECX_XSAVE = 26;

/**
 * The XCR0 a vCPU starts with: the user state components the guest's CPUID offers, which is the
 * value Linux (and any OS that enables every component it knows) writes with XSETBV. Until the
 * guest sets CR4.OSXSAVE, XCR0 is invisible to it (XGETBV and XSAVE fault), so starting there
 * rather than at the reset value 1 changes nothing a guest can see on a KVM host. It matters
 * where the host does not intercept a nested guest's XSETBV (QEMU's TCG SVM, the test host of
 * docs/testing.md): KVM never learns the guest's value, reports a CPUID 0xD size for its own,
 * and reloads its own on every VM entry, under the guest's feet. Linux then warned "XSAVE
 * consistency problem" and guests crashed at random; with the values equal there is nothing to
 * lose. Components that need permission or that Linux does not manage (MPX, AMX) are left out.
 */
export function bootXcr0(cpuid: readonly KvmCpuidEntry2[]): bigint {
  const leaf = (fn: number, index = 0) => cpuid.find((e) => e.function === fn && e.index === index);
  const l1 = leaf(1);
  const xsave = leaf(0xd);
  if (l1 === undefined || xsave === undefined || ((l1.ecx >>> LEAF1_ECX_XSAVE) & 1) === 0) return 1n;
  const offered = BigInt(xsave.eax >>> 0) | (BigInt(xsave.edx >>> 0) << 32n);
  let xcr0 = 0n;
  for (const c of OS_XSTATE_COMPONENTS) {
    if ((offered & c.bit) === 0n) continue;
    if (c.needs !== null) {
      const e = leaf(c.needs.leaf);
      if (e === undefined || ((e[c.needs.reg] >>> c.needs.bit) & 1) === 0) continue;
    }
    xcr0 |= c.bit;
  }
  // x87 is mandatory in XCR0; without SSE nothing but x87 may be on.
  return (xcr0 & 3n) === 3n ? xcr0 : 1n;
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
