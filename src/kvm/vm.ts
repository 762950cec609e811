import type { EventFd } from '../sys/eventfd.js';
import { close, ioctlBuf, ioctlInt, mmap, munmap, viewAt, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../sys/libc.js';
import { KvmError, kvmCall } from './errors.js';
import { KVM_CAPS, KVM_CONSTANTS, KVM_IOCTLS, type KvmCapName } from './ioctls.js';
import {
  SIZES, decodeClock, encodeClock, encodeDirtyLog, encodeEnableCap, encodeIoeventfd, encodeIrqLevel,
  encodeIrqfd, encodePitConfig, encodeUserMemoryRegion, structBuffer,
} from './structs.js';
import type { KvmClockData } from './types.js';
import { VcpuFd } from './vcpu.js';

/** Which in-kernel interrupt controller KVM_GET/SET_IRQCHIP addresses. */
export type IrqchipId = 0 | 1 | 2; // PIC master, PIC slave, IOAPIC

/** Size of the chip-state union inside kvm_irqchip (what getIrqchip returns). */
export const IRQCHIP_STATE_BYTES = SIZES.kvm_irqchip - 8;

export interface IoeventfdOptions {
  /** Only signal when the guest writes exactly this value (len bytes). */
  datamatch?: bigint | undefined;
  /** Port I/O instead of MMIO. */
  pio?: boolean | undefined;
}

function toBig(x: number | bigint, what: string): bigint {
  const b = BigInt(x);
  if (b < 0n || b >= 1n << 64n) throw new RangeError(`${what} out of range: ${String(x)}`);
  return b;
}

function fdOf(e: EventFd | number): number {
  return typeof e === 'number' ? e : e.fd;
}

/** A KVM VM fd: memory slots, in-kernel irqchip/PIT, interrupt plumbing, vCPU creation. */
export class VmFd {
  private closed = false;
  /**
   * Slot → what it maps, so a dirty-log bitmap can be checked against what the kernel writes and
   * a slot's flags can change without the caller repeating its addresses.
   */
  private readonly slots = new Map<number, { gpa: bigint; size: bigint; host: bigint; flags: number }>();

  constructor(readonly fd: number, readonly runMmapSize: number) {}

  checkExtension(cap: KvmCapName | number): number {
    const n = typeof cap === 'number' ? cap : KVM_CAPS[cap];
    return kvmCall(`KVM_CHECK_EXTENSION(${cap}) on VM`, () => ioctlInt(this.fd, KVM_IOCTLS.KVM_CHECK_EXTENSION, n));
  }

  enableCap(cap: KvmCapName | number, args: readonly bigint[] = []): void {
    const n = typeof cap === 'number' ? cap : KVM_CAPS[cap];
    kvmCall(`KVM_ENABLE_CAP(${cap})`, () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_ENABLE_CAP, encodeEnableCap(n, args)));
  }

  /**
   * KVM_SET_USER_MEMORY_REGION: maps [gpa, gpa+size) onto host memory at hostAddress. Size 0
   * deletes the slot. Addresses and size must be page-aligned (the kernel says EINVAL otherwise).
   */
  setUserMemoryRegion(slot: number, gpa: number | bigint, size: number | bigint, hostAddress: bigint, flags = 0): void {
    const g = toBig(gpa, 'guest address'), s = toBig(size, 'region size'), h = toBig(hostAddress, 'host address');
    if ((g | s | h) & 0xfffn) throw new KvmError(`memory slot ${slot}: guest address, size and host address must be 4 KiB aligned`);
    const b = encodeUserMemoryRegion(slot, flags, g, s, h);
    kvmCall(`KVM_SET_USER_MEMORY_REGION(slot ${slot}, gpa 0x${g.toString(16)}, ${s} bytes)`, () =>
      ioctlBuf(this.fd, KVM_IOCTLS.KVM_SET_USER_MEMORY_REGION, b));
    if (s === 0n) this.slots.delete(slot);
    else this.slots.set(slot, { gpa: g, size: s, host: h, flags });
  }

  /**
   * Turns KVM_MEM_LOG_DIRTY_PAGES on or off for an existing slot (a flags-only change, which KVM
   * allows on a live slot). On, KVM write-protects the slot and logs each page a vCPU writes.
   */
  setDirtyLogging(slot: number, enabled: boolean): void {
    const s = this.slots.get(slot);
    if (s === undefined) throw new KvmError(`memory slot ${slot} was not set up through this VmFd`);
    const flag = KVM_CONSTANTS.KVM_MEM_LOG_DIRTY_PAGES;
    const flags = enabled ? s.flags | flag : s.flags & ~flag;
    if (flags !== s.flags) this.setUserMemoryRegion(slot, s.gpa, s.size, s.host, flags);
  }

  /** Bytes of the dirty bitmap of a slot: one bit per 4 KiB page, in whole u64 words (as KVM writes it). */
  dirtyBitmapBytes(slot: number): number {
    const size = this.slots.get(slot)?.size;
    if (size === undefined) throw new KvmError(`memory slot ${slot} was not set up through this VmFd`);
    const pages = Number(size / 4096n);
    return Math.ceil(pages / 64) * 8;
  }

  /** KVM_SET_TSS_ADDR: three pages of guest-physical space KVM needs on Intel; outside RAM. */
  setTssAddr(address: number): void {
    kvmCall('KVM_SET_TSS_ADDR', () => ioctlInt(this.fd, KVM_IOCTLS.KVM_SET_TSS_ADDR, address));
  }

  /** KVM_SET_IDENTITY_MAP_ADDR: one page for the EPT identity map; must precede vCPU creation. */
  setIdentityMapAddr(address: number | bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, toBig(address, 'identity map address'), true);
    kvmCall('KVM_SET_IDENTITY_MAP_ADDR', () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_SET_IDENTITY_MAP_ADDR, b));
  }

  createIrqchip(): void {
    kvmCall('KVM_CREATE_IRQCHIP', () => ioctlInt(this.fd, KVM_IOCTLS.KVM_CREATE_IRQCHIP));
  }

  createPit2(flags: number = KVM_CONSTANTS.KVM_PIT_SPEAKER_DUMMY): void {
    kvmCall('KVM_CREATE_PIT2', () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_CREATE_PIT2, encodePitConfig(flags)));
  }

  /** The raw state (512 bytes) of one in-kernel interrupt controller. */
  getIrqchip(chip: IrqchipId): Uint8Array {
    const b = structBuffer('kvm_irqchip');
    new DataView(b.buffer).setUint32(0, chip, true);
    kvmCall(`KVM_GET_IRQCHIP(${chip})`, () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_GET_IRQCHIP, b));
    return b.slice(8);
  }

  setIrqchip(chip: IrqchipId, state: Uint8Array): void {
    if (state.byteLength !== IRQCHIP_STATE_BYTES) throw new KvmError(`irqchip ${chip} state must be ${IRQCHIP_STATE_BYTES} bytes, got ${state.byteLength}`);
    const b = structBuffer('kvm_irqchip');
    new DataView(b.buffer).setUint32(0, chip, true);
    b.set(state, 8);
    kvmCall(`KVM_SET_IRQCHIP(${chip})`, () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_SET_IRQCHIP, b));
  }

  /** Raw kvm_pit_state2 (112 bytes). */
  getPit2(): Uint8Array {
    const b = structBuffer('kvm_pit_state2');
    kvmCall('KVM_GET_PIT2', () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_GET_PIT2, b));
    return b;
  }

  setPit2(state: Uint8Array): void {
    if (state.byteLength !== SIZES.kvm_pit_state2) throw new KvmError(`PIT state must be ${SIZES.kvm_pit_state2} bytes, got ${state.byteLength}`);
    kvmCall('KVM_SET_PIT2', () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_SET_PIT2, state.slice()));
  }

  getClock(): KvmClockData {
    const b = structBuffer('kvm_clock_data');
    kvmCall('KVM_GET_CLOCK', () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_GET_CLOCK, b));
    return decodeClock(b);
  }

  /** KVM_SET_CLOCK. Only `clock` is applied unless flags ask for realtime (KVM_CLOCK_REALTIME). */
  setClock(clock: KvmClockData): void {
    kvmCall('KVM_SET_CLOCK', () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_SET_CLOCK, encodeClock(clock)));
  }

  /** KVM_IRQ_LINE: drives a GSI of the in-kernel irqchip high (1) or low (0). */
  irqLine(gsi: number, level: 0 | 1): void {
    kvmCall(`KVM_IRQ_LINE(${gsi}, ${level})`, () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_IRQ_LINE, encodeIrqLevel(gsi, level)));
  }

  /** KVM_IRQFD: a write to `eventfd` injects an edge on `gsi` with no VMM involvement. */
  irqfd(eventfd: EventFd | number, gsi: number): void {
    kvmCall(`KVM_IRQFD(gsi ${gsi})`, () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_IRQFD, encodeIrqfd(fdOf(eventfd), gsi, 0)));
  }

  irqfdDeassign(eventfd: EventFd | number, gsi: number): void {
    kvmCall(`KVM_IRQFD deassign (gsi ${gsi})`, () =>
      ioctlBuf(this.fd, KVM_IOCTLS.KVM_IRQFD, encodeIrqfd(fdOf(eventfd), gsi, KVM_CONSTANTS.KVM_IRQFD_FLAG_DEASSIGN)));
  }

  /** KVM_IOEVENTFD: guest writes of `len` bytes to `address` bump `eventfd` instead of exiting. */
  ioeventfd(eventfd: EventFd | number, address: number | bigint, len: 0 | 1 | 2 | 4 | 8, options: IoeventfdOptions = {}): void {
    this.ioeventfdCall(eventfd, address, len, options, 0, 'KVM_IOEVENTFD');
  }

  ioeventfdDeassign(eventfd: EventFd | number, address: number | bigint, len: 0 | 1 | 2 | 4 | 8, options: IoeventfdOptions = {}): void {
    this.ioeventfdCall(eventfd, address, len, options, KVM_CONSTANTS.KVM_IOEVENTFD_FLAG_DEASSIGN, 'KVM_IOEVENTFD deassign');
  }

  private ioeventfdCall(eventfd: EventFd | number, address: number | bigint, len: number, o: IoeventfdOptions, extra: number, what: string): void {
    let flags = extra;
    if (o.datamatch !== undefined) flags |= KVM_CONSTANTS.KVM_IOEVENTFD_FLAG_DATAMATCH;
    if (o.pio) flags |= KVM_CONSTANTS.KVM_IOEVENTFD_FLAG_PIO;
    const addr = toBig(address, 'ioeventfd address');
    const b = encodeIoeventfd(fdOf(eventfd), addr, len, o.datamatch ?? 0n, flags);
    kvmCall(`${what}(0x${addr.toString(16)}, ${len})`, () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_IOEVENTFD, b));
  }

  /**
   * KVM_GET_DIRTY_LOG for a slot created with KVM_MEM_LOG_DIRTY_PAGES: one bit per page, cleared
   * by the kernel on each call. `bitmapBytes` defaults to, and must be at least,
   * `dirtyBitmapBytes(slot)`: the kernel writes that much through a raw pointer, so a shorter
   * buffer would let it write past the end. The bitmap lives in a scratch mapping and is copied out.
   */
  getDirtyLog(slot: number, bitmapBytes = this.dirtyBitmapBytes(slot)): Uint8Array {
    const needed = this.dirtyBitmapBytes(slot);
    if (!Number.isSafeInteger(bitmapBytes) || bitmapBytes < needed) {
      throw new RangeError(`dirty bitmap of slot ${slot} needs ${needed} bytes, got ${bitmapBytes}`);
    }
    const mapLen = Math.ceil(bitmapBytes / 4096) * 4096;
    const addr = mmap(mapLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 'dirty bitmap');
    try {
      kvmCall(`KVM_GET_DIRTY_LOG(slot ${slot})`, () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_GET_DIRTY_LOG, encodeDirtyLog(slot, addr)));
      return new Uint8Array(viewAt(addr, bitmapBytes)).slice();
    } finally {
      munmap(addr, mapLen);
    }
  }

  /** KVM_CREATE_VCPU and the mmap of its kvm_run page(s). */
  createVcpu(id: number): VcpuFd {
    const vcpuFd = kvmCall(`KVM_CREATE_VCPU(${id})`, () => ioctlInt(this.fd, KVM_IOCTLS.KVM_CREATE_VCPU, id));
    return VcpuFd.create(vcpuFd, this.runMmapSize);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}
