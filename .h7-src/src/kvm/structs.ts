import type { KvmCpuidEntry2, KvmDtable, KvmMsrEntry, KvmRegs, KvmSegment, KvmSregs } from './types.js';
import type { KvmClockData, KvmXcrs } from './types.js';

/**
 * Sizes and field offsets of the <linux/kvm.h> structures tsvmm passes to ioctls (x86-64), with
 * encode/decode between bytes and the plain-data shapes of types.ts. The SIZES and OFFSETS tables
 * are what native-shims/kvm_layout.c checks against the kernel headers, key for key.
 */
export const SIZES = {
  kvm_regs: 144,
  kvm_segment: 24,
  kvm_dtable: 16,
  kvm_sregs: 312,
  kvm_fpu: 416,
  kvm_xsave: 4096,
  kvm_xcr: 16,
  kvm_xcrs: 392,
  kvm_msr_entry: 16,
  kvm_msrs: 8,
  kvm_msr_list: 4,
  kvm_cpuid_entry2: 40,
  kvm_cpuid2: 8,
  kvm_lapic_state: 1024,
  kvm_vcpu_events: 64,
  kvm_mp_state: 4,
  kvm_debugregs: 128,
  kvm_userspace_memory_region: 32,
  kvm_irqchip: 520,
  kvm_pit_config: 64,
  kvm_pit_state2: 112,
  kvm_irqfd: 32,
  kvm_ioeventfd: 64,
  kvm_dirty_log: 16,
  kvm_clock_data: 48,
  kvm_irq_level: 8,
  kvm_enable_cap: 104,
} as const;

export const REG_NAMES = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const satisfies ReadonlyArray<keyof KvmRegs>;

export const SEGMENT_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const SEGMENT_FIELDS = ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const;
const SREGS_CRS = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'] as const;

function offsetsOf(): Record<string, number> {
  const o: Record<string, number> = {};
  REG_NAMES.forEach((r, i) => { o[`kvm_regs.${r}`] = i * 8; });
  o['kvm_segment.base'] = 0;
  o['kvm_segment.limit'] = 8;
  o['kvm_segment.selector'] = 12;
  SEGMENT_FIELDS.forEach((f, i) => { o[`kvm_segment.${f}`] = 14 + i; });
  o['kvm_dtable.base'] = 0;
  o['kvm_dtable.limit'] = 8;
  SEGMENT_NAMES.forEach((s, i) => { o[`kvm_sregs.${s}`] = i * 24; });
  o['kvm_sregs.gdt'] = 192;
  o['kvm_sregs.idt'] = 208;
  SREGS_CRS.forEach((c, i) => { o[`kvm_sregs.${c}`] = 224 + i * 8; });
  o['kvm_sregs.interrupt_bitmap'] = 280;
  Object.assign(o, {
    'kvm_fpu.fpr': 0, 'kvm_fpu.fcw': 128, 'kvm_fpu.fsw': 130, 'kvm_fpu.ftwx': 132,
    'kvm_fpu.last_opcode': 134, 'kvm_fpu.last_ip': 136, 'kvm_fpu.last_dp': 144, 'kvm_fpu.xmm': 152,
    'kvm_fpu.mxcsr': 408,
    'kvm_xcr.xcr': 0, 'kvm_xcr.value': 8,
    'kvm_xcrs.nr_xcrs': 0, 'kvm_xcrs.flags': 4, 'kvm_xcrs.xcrs': 8,
    'kvm_msr_entry.index': 0, 'kvm_msr_entry.data': 8,
    'kvm_msrs.nmsrs': 0, 'kvm_msrs.entries': 8,
    'kvm_msr_list.nmsrs': 0, 'kvm_msr_list.indices': 4,
    'kvm_cpuid_entry2.function': 0, 'kvm_cpuid_entry2.index': 4, 'kvm_cpuid_entry2.flags': 8,
    'kvm_cpuid_entry2.eax': 12, 'kvm_cpuid_entry2.ebx': 16, 'kvm_cpuid_entry2.ecx': 20, 'kvm_cpuid_entry2.edx': 24,
    'kvm_cpuid2.nent': 0, 'kvm_cpuid2.entries': 8,
    'kvm_mp_state.mp_state': 0,
    'kvm_debugregs.db': 0, 'kvm_debugregs.dr6': 32, 'kvm_debugregs.dr7': 40, 'kvm_debugregs.flags': 48,
    'kvm_userspace_memory_region.slot': 0, 'kvm_userspace_memory_region.flags': 4,
    'kvm_userspace_memory_region.guest_phys_addr': 8, 'kvm_userspace_memory_region.memory_size': 16,
    'kvm_userspace_memory_region.userspace_addr': 24,
    'kvm_irqchip.chip_id': 0, 'kvm_irqchip.chip': 8,
    'kvm_pit_config.flags': 0,
    'kvm_pit_state2.channels': 0, 'kvm_pit_state2.flags': 72,
    'kvm_irqfd.fd': 0, 'kvm_irqfd.gsi': 4, 'kvm_irqfd.flags': 8, 'kvm_irqfd.resamplefd': 12,
    'kvm_ioeventfd.datamatch': 0, 'kvm_ioeventfd.addr': 8, 'kvm_ioeventfd.len': 16,
    'kvm_ioeventfd.fd': 20, 'kvm_ioeventfd.flags': 24,
    'kvm_dirty_log.slot': 0, 'kvm_dirty_log.dirty_bitmap': 8,
    'kvm_clock_data.clock': 0, 'kvm_clock_data.flags': 8, 'kvm_clock_data.realtime': 16, 'kvm_clock_data.host_tsc': 24,
    'kvm_irq_level.irq': 0, 'kvm_irq_level.level': 4,
    'kvm_enable_cap.cap': 0, 'kvm_enable_cap.flags': 4, 'kvm_enable_cap.args': 8,
  });
  Object.assign(o, RUN);
  return o;
}

/** Offsets inside the mmap'ed `struct kvm_run` (keys name the C member path). */
export const RUN = {
  'kvm_run.request_interrupt_window': 0,
  'kvm_run.immediate_exit': 1,
  'kvm_run.exit_reason': 8,
  'kvm_run.ready_for_interrupt_injection': 12,
  'kvm_run.if_flag': 13,
  'kvm_run.flags': 14,
  'kvm_run.cr8': 16,
  'kvm_run.apic_base': 24,
  'kvm_run.io.direction': 32,
  'kvm_run.io.size': 33,
  'kvm_run.io.port': 34,
  'kvm_run.io.count': 36,
  'kvm_run.io.data_offset': 40,
  'kvm_run.mmio.phys_addr': 32,
  'kvm_run.mmio.data': 40,
  'kvm_run.mmio.len': 48,
  'kvm_run.mmio.is_write': 52,
  'kvm_run.fail_entry.hardware_entry_failure_reason': 32,
  'kvm_run.fail_entry.cpu': 40,
  'kvm_run.internal.suberror': 32,
  'kvm_run.internal.ndata': 36,
  'kvm_run.internal.data': 40,
  'kvm_run.system_event.type': 32,
  'kvm_run.system_event.ndata': 36,
  'kvm_run.system_event.data': 40,
  'kvm_run.hw.hardware_exit_reason': 32,
} as const;

/** Array lengths the decoders rely on (internal.data and system_event.data hold 16 u64). */
export const RUN_DATA_WORDS = 16;

/** Every checked offset, keyed "struct.member" (or "kvm_run.union.member"). */
export const OFFSETS: Readonly<Record<string, number>> = offsetsOf();

function off(key: string): number {
  const v = OFFSETS[key];
  if (v === undefined) throw new Error(`no offset for ${key}`);
  return v;
}

// ---- helpers ------------------------------------------------------------------------------------
function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function expectSize(b: Uint8Array, size: number, what: string): void {
  if (b.byteLength !== size) throw new RangeError(`${what} must be ${size} bytes, got ${b.byteLength}`);
}

/** A fresh zeroed buffer for a struct. */
export function structBuffer(name: keyof typeof SIZES): Uint8Array {
  return new Uint8Array(SIZES[name]);
}

// ---- kvm_regs ----------------------------------------------------------------------------------
export function encodeRegs(r: KvmRegs): Uint8Array {
  const b = structBuffer('kvm_regs');
  const v = dv(b);
  REG_NAMES.forEach((n, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, r[n]), true));
  return b;
}

export function decodeRegs(b: Uint8Array): KvmRegs {
  expectSize(b, SIZES.kvm_regs, 'kvm_regs');
  const v = dv(b);
  const r = {} as KvmRegs;
  REG_NAMES.forEach((n, i) => { r[n] = v.getBigUint64(i * 8, true); });
  return r;
}

// ---- kvm_sregs ---------------------------------------------------------------------------------
function encodeSegment(v: DataView, at: number, s: KvmSegment): void {
  v.setBigUint64(at, BigInt.asUintN(64, s.base), true);
  v.setUint32(at + 8, s.limit >>> 0, true);
  v.setUint16(at + 12, s.selector, true);
  SEGMENT_FIELDS.forEach((f, i) => v.setUint8(at + 14 + i, s[f]));
}

function decodeSegment(v: DataView, at: number): KvmSegment {
  const s = { base: v.getBigUint64(at, true), limit: v.getUint32(at + 8, true), selector: v.getUint16(at + 12, true) } as KvmSegment;
  SEGMENT_FIELDS.forEach((f, i) => { s[f] = v.getUint8(at + 14 + i); });
  return s;
}

function encodeDtable(v: DataView, at: number, d: KvmDtable): void {
  v.setBigUint64(at, BigInt.asUintN(64, d.base), true);
  v.setUint16(at + 8, d.limit, true);
}

function decodeDtable(v: DataView, at: number): KvmDtable {
  return { base: v.getBigUint64(at, true), limit: v.getUint16(at + 8, true) };
}

export function encodeSregs(s: KvmSregs): Uint8Array {
  const b = structBuffer('kvm_sregs');
  const v = dv(b);
  SEGMENT_NAMES.forEach((n) => encodeSegment(v, off(`kvm_sregs.${n}`), s[n]));
  encodeDtable(v, off('kvm_sregs.gdt'), s.gdt);
  encodeDtable(v, off('kvm_sregs.idt'), s.idt);
  SREGS_CRS.forEach((n) => v.setBigUint64(off(`kvm_sregs.${n}`), BigInt.asUintN(64, s[n]), true));
  s.interrupt_bitmap.forEach((w, i) => v.setBigUint64(off('kvm_sregs.interrupt_bitmap') + i * 8, BigInt.asUintN(64, w), true));
  return b;
}

export function decodeSregs(b: Uint8Array): KvmSregs {
  expectSize(b, SIZES.kvm_sregs, 'kvm_sregs');
  const v = dv(b);
  const s = {} as KvmSregs;
  SEGMENT_NAMES.forEach((n) => { s[n] = decodeSegment(v, off(`kvm_sregs.${n}`)); });
  s.gdt = decodeDtable(v, off('kvm_sregs.gdt'));
  s.idt = decodeDtable(v, off('kvm_sregs.idt'));
  SREGS_CRS.forEach((n) => { s[n] = v.getBigUint64(off(`kvm_sregs.${n}`), true); });
  const ib = off('kvm_sregs.interrupt_bitmap');
  s.interrupt_bitmap = [0, 1, 2, 3].map((i) => v.getBigUint64(ib + i * 8, true)) as KvmSregs['interrupt_bitmap'];
  return s;
}

// ---- kvm_cpuid2 ----------------------------------------------------------------------------------
/** A kvm_cpuid2 header with room for `capacity` entries (nent = capacity). */
export function cpuidBuffer(capacity: number): Uint8Array {
  const b = new Uint8Array(SIZES.kvm_cpuid2 + capacity * SIZES.kvm_cpuid_entry2);
  dv(b).setUint32(0, capacity, true);
  return b;
}

export function encodeCpuid2(entries: readonly KvmCpuidEntry2[]): Uint8Array {
  const b = cpuidBuffer(entries.length);
  const v = dv(b);
  entries.forEach((e, i) => {
    const at = SIZES.kvm_cpuid2 + i * SIZES.kvm_cpuid_entry2;
    v.setUint32(at, e.function >>> 0, true);
    v.setUint32(at + 4, e.index >>> 0, true);
    v.setUint32(at + 8, e.flags >>> 0, true);
    v.setUint32(at + 12, e.eax >>> 0, true);
    v.setUint32(at + 16, e.ebx >>> 0, true);
    v.setUint32(at + 20, e.ecx >>> 0, true);
    v.setUint32(at + 24, e.edx >>> 0, true);
  });
  return b;
}

export function decodeCpuid2(b: Uint8Array): KvmCpuidEntry2[] {
  const v = dv(b);
  const n = v.getUint32(0, true);
  if (SIZES.kvm_cpuid2 + n * SIZES.kvm_cpuid_entry2 > b.byteLength) throw new RangeError(`kvm_cpuid2 claims ${n} entries, buffer too small`);
  const out: KvmCpuidEntry2[] = [];
  for (let i = 0; i < n; i++) {
    const at = SIZES.kvm_cpuid2 + i * SIZES.kvm_cpuid_entry2;
    out.push({
      function: v.getUint32(at, true), index: v.getUint32(at + 4, true), flags: v.getUint32(at + 8, true),
      eax: v.getUint32(at + 12, true), ebx: v.getUint32(at + 16, true), ecx: v.getUint32(at + 20, true), edx: v.getUint32(at + 24, true),
    });
  }
  return out;
}

// ---- kvm_msrs / kvm_msr_list ---------------------------------------------------------------------
export function encodeMsrs(entries: readonly KvmMsrEntry[]): Uint8Array {
  const b = new Uint8Array(SIZES.kvm_msrs + entries.length * SIZES.kvm_msr_entry);
  const v = dv(b);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const at = SIZES.kvm_msrs + i * SIZES.kvm_msr_entry;
    v.setUint32(at, e.index >>> 0, true);
    v.setBigUint64(at + 8, BigInt.asUintN(64, e.data), true);
  });
  return b;
}

/** Decodes the first `count` entries of a kvm_msrs buffer. */
export function decodeMsrs(b: Uint8Array, count: number): KvmMsrEntry[] {
  const v = dv(b);
  if (SIZES.kvm_msrs + count * SIZES.kvm_msr_entry > b.byteLength) throw new RangeError('kvm_msrs buffer too small');
  const out: KvmMsrEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = SIZES.kvm_msrs + i * SIZES.kvm_msr_entry;
    out.push({ index: v.getUint32(at, true), data: v.getBigUint64(at + 8, true) });
  }
  return out;
}

export function msrListBuffer(capacity: number): Uint8Array {
  const b = new Uint8Array(SIZES.kvm_msr_list + capacity * 4);
  dv(b).setUint32(0, capacity, true);
  return b;
}

export function decodeMsrList(b: Uint8Array): number[] {
  const v = dv(b);
  const n = v.getUint32(0, true);
  if (SIZES.kvm_msr_list + n * 4 > b.byteLength) throw new RangeError(`kvm_msr_list claims ${n} entries, buffer too small`);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(v.getUint32(SIZES.kvm_msr_list + i * 4, true));
  return out;
}

// ---- kvm_xcrs ------------------------------------------------------------------------------------
export const KVM_MAX_XCRS = 16;

export function encodeXcrs(x: KvmXcrs): Uint8Array {
  if (x.xcrs.length > KVM_MAX_XCRS) throw new RangeError(`at most ${KVM_MAX_XCRS} XCRs, got ${x.xcrs.length}`);
  const b = structBuffer('kvm_xcrs');
  const v = dv(b);
  v.setUint32(0, x.xcrs.length, true);
  v.setUint32(4, x.flags >>> 0, true);
  x.xcrs.forEach((e, i) => {
    v.setUint32(8 + i * 16, e.xcr >>> 0, true);
    v.setBigUint64(8 + i * 16 + 8, BigInt.asUintN(64, e.value), true);
  });
  return b;
}

export function decodeXcrs(b: Uint8Array): KvmXcrs {
  expectSize(b, SIZES.kvm_xcrs, 'kvm_xcrs');
  const v = dv(b);
  const n = Math.min(v.getUint32(0, true), KVM_MAX_XCRS);
  const xcrs = [];
  for (let i = 0; i < n; i++) xcrs.push({ xcr: v.getUint32(8 + i * 16, true), value: v.getBigUint64(8 + i * 16 + 8, true) });
  return { flags: v.getUint32(4, true), xcrs };
}

// ---- kvm_clock_data ------------------------------------------------------------------------------
export function encodeClock(c: KvmClockData): Uint8Array {
  const b = structBuffer('kvm_clock_data');
  const v = dv(b);
  v.setBigUint64(0, BigInt.asUintN(64, c.clock), true);
  v.setUint32(8, c.flags >>> 0, true);
  v.setBigUint64(16, BigInt.asUintN(64, c.realtime), true);
  v.setBigUint64(24, BigInt.asUintN(64, c.host_tsc), true);
  return b;
}

export function decodeClock(b: Uint8Array): KvmClockData {
  expectSize(b, SIZES.kvm_clock_data, 'kvm_clock_data');
  const v = dv(b);
  return { clock: v.getBigUint64(0, true), flags: v.getUint32(8, true), realtime: v.getBigUint64(16, true), host_tsc: v.getBigUint64(24, true) };
}

// ---- small argument structs ---------------------------------------------------------------------------
export function encodeUserMemoryRegion(slot: number, flags: number, gpa: bigint, size: bigint, hostAddress: bigint): Uint8Array {
  const b = structBuffer('kvm_userspace_memory_region');
  const v = dv(b);
  v.setUint32(0, slot, true);
  v.setUint32(4, flags, true);
  v.setBigUint64(8, gpa, true);
  v.setBigUint64(16, size, true);
  v.setBigUint64(24, hostAddress, true);
  return b;
}

export function encodeIrqLevel(irq: number, level: number): Uint8Array {
  const b = structBuffer('kvm_irq_level');
  const v = dv(b);
  v.setUint32(0, irq, true);
  v.setUint32(4, level, true);
  return b;
}

export function encodeIrqfd(fd: number, gsi: number, flags: number): Uint8Array {
  const b = structBuffer('kvm_irqfd');
  const v = dv(b);
  v.setUint32(0, fd, true);
  v.setUint32(4, gsi, true);
  v.setUint32(8, flags, true);
  return b;
}

export function encodeIoeventfd(fd: number, addr: bigint, len: number, datamatch: bigint, flags: number): Uint8Array {
  const b = structBuffer('kvm_ioeventfd');
  const v = dv(b);
  v.setBigUint64(0, BigInt.asUintN(64, datamatch), true);
  v.setBigUint64(8, addr, true);
  v.setUint32(16, len, true);
  v.setInt32(20, fd, true);
  v.setUint32(24, flags, true);
  return b;
}

export function encodeDirtyLog(slot: number, bitmapAddress: bigint): Uint8Array {
  const b = structBuffer('kvm_dirty_log');
  const v = dv(b);
  v.setUint32(0, slot, true);
  v.setBigUint64(8, bitmapAddress, true);
  return b;
}

export function encodePitConfig(flags: number): Uint8Array {
  const b = structBuffer('kvm_pit_config');
  dv(b).setUint32(0, flags, true);
  return b;
}

export function encodeEnableCap(cap: number, args: readonly bigint[]): Uint8Array {
  if (args.length > 4) throw new RangeError('kvm_enable_cap takes at most 4 args');
  const b = structBuffer('kvm_enable_cap');
  const v = dv(b);
  v.setUint32(0, cap, true);
  args.forEach((a, i) => v.setBigUint64(8 + i * 8, BigInt.asUintN(64, a), true));
  return b;
}
