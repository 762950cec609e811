import { EAGAIN, EINTR, errnoName } from '../sys/errno.js';
import { close, ioctlBuf, ioctlInt, ioctlIntRaw, mmap, munmap, viewAt, MAP_SHARED, PROT_READ, PROT_WRITE } from '../sys/libc.js';
import { KvmError, kvmCall } from './errors.js';
import { KVM_CONSTANTS, KVM_EXIT, KVM_IOCTLS } from './ioctls.js';
import {
  RUN, RUN_DATA_WORDS, SIZES, decodeMsrs, decodeRegs, decodeSregs, decodeXcrs, encodeCpuid2, encodeMsrs,
  encodeRegs, encodeSregs, encodeXcrs, structBuffer, cpuidBuffer, decodeCpuid2,
} from './structs.js';
import type { KvmCpuidEntry2, KvmMsrEntry, KvmRegs, KvmSregs, KvmXcrs } from './types.js';

/** One return of KVM_RUN, decoded. `data` views are live windows on the kvm_run mapping. */
export type VcpuExit =
  | { kind: 'io'; direction: 'in' | 'out'; port: number; size: number; count: number; data: Uint8Array }
  | { kind: 'mmio'; address: number; isWrite: boolean; data: Uint8Array }
  | { kind: 'hlt' }
  | { kind: 'shutdown' }
  | { kind: 'intr' }
  | { kind: 'irq_window_open' }
  | { kind: 'system_event'; type: number; data: bigint[] }
  | { kind: 'internal_error'; suberror: number; data: bigint[] }
  | { kind: 'fail_entry'; reason: bigint; cpu: number }
  | { kind: 'unsupported'; reason: number };

/** What a worker thread needs to drive a vCPU created elsewhere: plain, structured-clone-safe. */
export interface VcpuHandle {
  fd: number;
  runAddress: bigint;
  runSize: number;
}

const HLT: VcpuExit = Object.freeze({ kind: 'hlt' });
const SHUTDOWN: VcpuExit = Object.freeze({ kind: 'shutdown' });
const INTR: VcpuExit = Object.freeze({ kind: 'intr' });
const IRQ_WINDOW: VcpuExit = Object.freeze({ kind: 'irq_window_open' });

const O_IO_DIR = RUN['kvm_run.io.direction'];
const O_IO_SIZE = RUN['kvm_run.io.size'];
const O_IO_PORT = RUN['kvm_run.io.port'];
const O_IO_COUNT = RUN['kvm_run.io.count'];
const O_IO_DATA = RUN['kvm_run.io.data_offset'];
const O_MMIO_ADDR = RUN['kvm_run.mmio.phys_addr'];
const O_MMIO_DATA = RUN['kvm_run.mmio.data'];
const O_MMIO_LEN = RUN['kvm_run.mmio.len'];
const O_MMIO_WRITE = RUN['kvm_run.mmio.is_write'];

/**
 * A vCPU fd and its kvm_run mapping. The thread that creates it (`VmFd.createVcpu`) owns the fd
 * and the mapping; other threads `attach()` to the same fd and address and share them (threads
 * share the address space), which is how the vCPU worker runs KVM_RUN while the main thread keeps
 * the right to kick it (`setImmediateExit` + pthread_kill) and to close it.
 *
 * State get/set calls take the kernel's vCPU mutex: issued from another thread while KVM_RUN is
 * in progress they block until it returns, so pause the vCPU first.
 */
export class VcpuFd {
  private readonly run8: Uint8Array;
  private readonly runView: DataView;
  /** Reusable live views of mmio.data, index = length (0..8). */
  private readonly mmioViews: Uint8Array[];
  /** The last io data view, reused while the kernel keeps the same offset and length. */
  private ioView: Uint8Array;
  private ioViewOffset = -1;
  private closed = false;

  private constructor(readonly fd: number, readonly runAddress: bigint, readonly runSize: number, private readonly owner: boolean) {
    this.run8 = new Uint8Array(viewAt(runAddress, runSize));
    this.runView = new DataView(this.run8.buffer);
    this.mmioViews = Array.from({ length: 9 }, (_, n) => this.run8.subarray(O_MMIO_DATA, O_MMIO_DATA + n));
    this.ioView = this.run8.subarray(0, 0);
  }

  /** Maps kvm_run for a freshly created vCPU fd; the returned object owns fd and mapping. */
  static create(fd: number, runSize: number): VcpuFd {
    let address: bigint;
    try {
      address = mmap(runSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, 'kvm_run');
    } catch (e) {
      close(fd);
      throw KvmError.fromSys('mmap of kvm_run', e);
    }
    return new VcpuFd(fd, address, runSize, true);
  }

  /** Wraps a vCPU created in another thread of this process; `close()` on it releases nothing. */
  static attach(handle: VcpuHandle): VcpuFd {
    if (!Number.isInteger(handle.fd) || handle.fd < 0) throw new KvmError(`bad vCPU fd ${handle.fd}`);
    if (typeof handle.runAddress !== 'bigint' || handle.runAddress === 0n) throw new KvmError('bad kvm_run address');
    if (!Number.isInteger(handle.runSize) || handle.runSize < 4096) throw new KvmError(`bad kvm_run size ${handle.runSize}`);
    return new VcpuFd(handle.fd, handle.runAddress, handle.runSize, false);
  }

  /** The plain data another thread passes to `VcpuFd.attach`. */
  handle(): VcpuHandle {
    return { fd: this.fd, runAddress: this.runAddress, runSize: this.runSize };
  }

  // ---- the run loop ---------------------------------------------------------------------------
  /**
   * One KVM_RUN. For 'io' in / 'mmio' reads, fill `data` before the next run(); for writes, read
   * it before the next run(). The returned views are reused across calls: consume them before
   * calling run() again. An 'intr' exit leaves immediate_exit as it was: clear it before resuming.
   */
  run(): VcpuExit {
    const r = ioctlIntRaw(this.fd, KVM_IOCTLS.KVM_RUN, 0);
    if (r < 0) {
      if (r === -EINTR) return INTR;
      if (r === -EAGAIN) return INTR; // a vCPU woken with nothing to do (e.g. INIT-waiting AP)
      throw new KvmError(`KVM_RUN failed: ${errnoName(-r)}`, { errno: -r, op: 'KVM_RUN' });
    }
    const v = this.runView;
    const reason = v.getUint32(RUN['kvm_run.exit_reason'], true);
    switch (reason) {
      case KVM_EXIT.KVM_EXIT_IO: {
        const size = v.getUint8(O_IO_SIZE);
        const count = v.getUint32(O_IO_COUNT, true);
        const offset = Number(v.getBigUint64(O_IO_DATA, true));
        const len = size * count;
        // Kernel-supplied, but a bad offset would make us read/write outside the mapping.
        if (offset < 0 || offset + len > this.runSize) {
          throw new KvmError(`KVM_EXIT_IO data (offset ${offset}, ${len} bytes) is outside the kvm_run mapping`);
        }
        if (offset !== this.ioViewOffset || this.ioView.byteLength !== len) {
          this.ioView = this.run8.subarray(offset, offset + len);
          this.ioViewOffset = offset;
        }
        return {
          kind: 'io',
          direction: v.getUint8(O_IO_DIR) === KVM_CONSTANTS.KVM_EXIT_IO_OUT ? 'out' : 'in',
          port: v.getUint16(O_IO_PORT, true),
          size,
          count,
          data: this.ioView,
        };
      }
      case KVM_EXIT.KVM_EXIT_MMIO: {
        const len = Math.min(v.getUint32(O_MMIO_LEN, true), 8);
        return {
          kind: 'mmio',
          // Two u32 reads: a guest-physical address fits a double exactly and avoids a BigInt.
          address: v.getUint32(O_MMIO_ADDR, true) + v.getUint32(O_MMIO_ADDR + 4, true) * 0x1_0000_0000,
          isWrite: v.getUint8(O_MMIO_WRITE) !== 0,
          data: this.mmioViews[len]!,
        };
      }
      case KVM_EXIT.KVM_EXIT_HLT: return HLT;
      case KVM_EXIT.KVM_EXIT_SHUTDOWN: return SHUTDOWN;
      case KVM_EXIT.KVM_EXIT_INTR: return INTR;
      case KVM_EXIT.KVM_EXIT_IRQ_WINDOW_OPEN: return IRQ_WINDOW;
      case KVM_EXIT.KVM_EXIT_SYSTEM_EVENT:
        return { kind: 'system_event', type: v.getUint32(RUN['kvm_run.system_event.type'], true), data: this.words('kvm_run.system_event.ndata', 'kvm_run.system_event.data') };
      case KVM_EXIT.KVM_EXIT_INTERNAL_ERROR:
        return { kind: 'internal_error', suberror: v.getUint32(RUN['kvm_run.internal.suberror'], true), data: this.words('kvm_run.internal.ndata', 'kvm_run.internal.data') };
      case KVM_EXIT.KVM_EXIT_FAIL_ENTRY:
        return {
          kind: 'fail_entry',
          reason: v.getBigUint64(RUN['kvm_run.fail_entry.hardware_entry_failure_reason'], true),
          cpu: v.getUint32(RUN['kvm_run.fail_entry.cpu'], true),
        };
      default:
        return { kind: 'unsupported', reason };
    }
  }

  private words(countKey: keyof typeof RUN, dataKey: keyof typeof RUN): bigint[] {
    const n = Math.min(this.runView.getUint32(RUN[countKey], true), RUN_DATA_WORDS);
    const out: bigint[] = [];
    for (let i = 0; i < n; i++) out.push(this.runView.getBigUint64(RUN[dataKey] + i * 8, true));
    return out;
  }

  /** kvm_run.immediate_exit: when set, KVM_RUN returns EINTR at once instead of entering the guest. */
  setImmediateExit(flag: boolean): void {
    this.run8[RUN['kvm_run.immediate_exit']] = flag ? 1 : 0;
  }

  get immediateExit(): boolean {
    return this.run8[RUN['kvm_run.immediate_exit']] !== 0;
  }

  /** kvm_run.request_interrupt_window: exit as soon as the guest can take an interrupt. */
  setRequestInterruptWindow(flag: boolean): void {
    this.run8[RUN['kvm_run.request_interrupt_window']] = flag ? 1 : 0;
  }

  get readyForInterruptInjection(): boolean {
    return this.run8[RUN['kvm_run.ready_for_interrupt_injection']] !== 0;
  }

  get ifFlag(): boolean {
    return this.run8[RUN['kvm_run.if_flag']] !== 0;
  }

  // ---- typed state ------------------------------------------------------------------------------
  getRegs(): KvmRegs {
    return decodeRegs(this.getRaw('KVM_GET_REGS', 'kvm_regs'));
  }

  setRegs(regs: KvmRegs): void {
    this.setRaw('KVM_SET_REGS', encodeRegs(regs));
  }

  getSregs(): KvmSregs {
    return decodeSregs(this.getRaw('KVM_GET_SREGS', 'kvm_sregs'));
  }

  setSregs(sregs: KvmSregs): void {
    this.setRaw('KVM_SET_SREGS', encodeSregs(sregs));
  }

  getXcrs(): KvmXcrs {
    return decodeXcrs(this.getRaw('KVM_GET_XCRS', 'kvm_xcrs'));
  }

  setXcrs(xcrs: KvmXcrs): void {
    this.setRaw('KVM_SET_XCRS', encodeXcrs(xcrs));
  }

  /** KVM_MP_STATE_* (RUNNABLE 0, UNINITIALIZED 1, INIT_RECEIVED 2, HALTED 3, SIPI_RECEIVED 4). */
  getMpState(): number {
    return new DataView(this.getRaw('KVM_GET_MP_STATE', 'kvm_mp_state').buffer).getUint32(0, true);
  }

  setMpState(state: number): void {
    const b = structBuffer('kvm_mp_state');
    new DataView(b.buffer).setUint32(0, state, true);
    this.setRaw('KVM_SET_MP_STATE', b);
  }

  /** Reads the given MSRs; throws naming the first MSR KVM refused. */
  getMsrs(indices: readonly number[]): KvmMsrEntry[] {
    const b = encodeMsrs(indices.map((index) => ({ index, data: 0n })));
    const n = kvmCall('KVM_GET_MSRS', () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_GET_MSRS, b));
    if (n !== indices.length) {
      throw new KvmError(`KVM_GET_MSRS read ${n} of ${indices.length} MSRs: MSR 0x${(indices[n] ?? 0).toString(16)} is not readable`, { msr: indices[n] });
    }
    return decodeMsrs(b, n);
  }

  /** Writes MSRs; throws naming the first MSR KVM refused (KVM stops at the first failure). */
  setMsrs(entries: readonly KvmMsrEntry[]): void {
    const n = kvmCall('KVM_SET_MSRS', () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_SET_MSRS, encodeMsrs(entries)));
    if (n !== entries.length) {
      const bad = entries[n]?.index ?? 0;
      throw new KvmError(`KVM_SET_MSRS wrote ${n} of ${entries.length} MSRs: MSR 0x${bad.toString(16)} was refused`, { msr: bad });
    }
  }

  setCpuid2(entries: readonly KvmCpuidEntry2[]): void {
    this.setRaw('KVM_SET_CPUID2', encodeCpuid2(entries));
  }

  getCpuid2(capacity = 256): KvmCpuidEntry2[] {
    const b = cpuidBuffer(capacity);
    kvmCall('KVM_GET_CPUID2', () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_GET_CPUID2, b));
    return decodeCpuid2(b);
  }

  /** The guest TSC frequency in kHz. */
  getTscKhz(): number {
    return kvmCall('KVM_GET_TSC_KHZ', () => ioctlInt(this.fd, KVM_IOCTLS.KVM_GET_TSC_KHZ));
  }

  setTscKhz(khz: number): void {
    kvmCall('KVM_SET_TSC_KHZ', () => ioctlInt(this.fd, KVM_IOCTLS.KVM_SET_TSC_KHZ, khz));
  }

  // ---- opaque state, saved and restored as bytes ------------------------------------------------------
  getFpu(): Uint8Array { return this.getRaw('KVM_GET_FPU', 'kvm_fpu'); }
  setFpu(b: Uint8Array): void { this.setRaw('KVM_SET_FPU', b, 'kvm_fpu'); }
  getXsave(): Uint8Array { return this.getRaw('KVM_GET_XSAVE', 'kvm_xsave'); }
  setXsave(b: Uint8Array): void { this.setRaw('KVM_SET_XSAVE', b, 'kvm_xsave'); }
  getLapic(): Uint8Array { return this.getRaw('KVM_GET_LAPIC', 'kvm_lapic_state'); }
  setLapic(b: Uint8Array): void { this.setRaw('KVM_SET_LAPIC', b, 'kvm_lapic_state'); }
  getVcpuEvents(): Uint8Array { return this.getRaw('KVM_GET_VCPU_EVENTS', 'kvm_vcpu_events'); }
  setVcpuEvents(b: Uint8Array): void { this.setRaw('KVM_SET_VCPU_EVENTS', b, 'kvm_vcpu_events'); }
  getDebugregs(): Uint8Array { return this.getRaw('KVM_GET_DEBUGREGS', 'kvm_debugregs'); }
  setDebugregs(b: Uint8Array): void { this.setRaw('KVM_SET_DEBUGREGS', b, 'kvm_debugregs'); }

  private getRaw(ioctl: keyof typeof KVM_IOCTLS, struct: keyof typeof SIZES): Uint8Array {
    const b = structBuffer(struct);
    kvmCall(ioctl, () => ioctlBuf(this.fd, KVM_IOCTLS[ioctl], b));
    return b;
  }

  private setRaw(ioctl: keyof typeof KVM_IOCTLS, b: Uint8Array, struct?: keyof typeof SIZES): void {
    if (struct !== undefined && b.byteLength !== SIZES[struct]) {
      throw new KvmError(`${ioctl}: ${struct} must be ${SIZES[struct]} bytes, got ${b.byteLength}`);
    }
    // Copy: the kernel may write back into the buffer (and a view into a snapshot must stay intact).
    const copy = b.slice();
    kvmCall(ioctl, () => ioctlBuf(this.fd, KVM_IOCTLS[ioctl], copy));
  }

  /** Owner: unmaps kvm_run and closes the fd. Attached copies only forget them. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.owner) return;
    munmap(this.runAddress, this.runSize);
    close(this.fd);
  }
}
