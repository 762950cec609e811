/**
 * Plain-data shapes of the KVM structures that cross module boundaries (boot code builds them,
 * the vCPU wrapper applies them, snapshots store them). Field names follow <linux/kvm.h>.
 * 64-bit registers are bigints; everything else fits a number.
 */
export interface KvmRegs {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint;
  rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint;
  r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
}

export interface KvmSegment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

export interface KvmDtable {
  base: bigint;
  limit: number;
}

export interface KvmSregs {
  cs: KvmSegment; ds: KvmSegment; es: KvmSegment; fs: KvmSegment; gs: KvmSegment; ss: KvmSegment;
  tr: KvmSegment; ldt: KvmSegment;
  gdt: KvmDtable; idt: KvmDtable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint;
  efer: bigint;
  apic_base: bigint;
  /** 256 bits of pending external interrupts, as 4 x u64. */
  interrupt_bitmap: [bigint, bigint, bigint, bigint];
}

export interface KvmCpuidEntry2 {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

export interface KvmMsrEntry {
  index: number;
  data: bigint;
}

/** kvm_xcrs: extended control registers (XCR0) and their values. */
export interface KvmXcrs {
  flags: number;
  xcrs: Array<{ xcr: number; value: bigint }>;
}

/** kvm_clock_data: the kvmclock value (ns) and, when flags say so, the host realtime/TSC it pairs with. */
export interface KvmClockData {
  clock: bigint;
  flags: number;
  realtime: bigint;
  host_tsc: bigint;
}
