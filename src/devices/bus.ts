/**
 * What a device exposes to the vCPU exit dispatcher. Offsets are relative to the device's base
 * (port or guest-physical address); `data` is the exact access width (1, 2, 4 or 8 bytes) and is
 * filled in by reads. Devices are plain state machines: no fds, no threads.
 */
export interface PioDevice {
  pioRead(offset: number, data: Uint8Array): void;
  pioWrite(offset: number, data: Uint8Array): void;
}

export interface MmioDevice {
  mmioRead(offset: number, data: Uint8Array): void;
  mmioWrite(offset: number, data: Uint8Array): void;
}

/**
 * An edge-triggered interrupt towards the guest (an irqfd write, or a test double that counts).
 * Safe to call from any thread that holds it.
 */
export interface InterruptLine {
  trigger(): void;
}

/** A device whose state goes into snapshots. `state()` cannot fail and returns JSON-safe data. */
export interface Snapshottable<S> {
  state(): S;
}

export interface AddressRange { base: number; size: number }
interface Range<D> extends AddressRange { device: D; name: string }

/** Address-range dispatch table; ranges may not overlap. Unclaimed accesses read as all-ones. */
export class Bus<D> {
  private ranges: Range<D>[] = [];

  insert(name: string, base: number, size: number, device: D): void {
    for (const r of this.ranges) {
      if (base < r.base + r.size && r.base < base + size) {
        throw new Error(`bus range ${name} 0x${base.toString(16)}+0x${size.toString(16)} overlaps ${r.name}`);
      }
    }
    this.ranges.push({ base, size, device, name });
    this.ranges.sort((a, b) => a.base - b.base);
  }

  /** The claimed ranges, in address order. */
  claimed(): AddressRange[] {
    return this.ranges.map(({ base, size }) => ({ base, size }));
  }

  /** The device covering `addr` and the offset into it, or undefined. */
  resolve(addr: number): { device: D; offset: number } | undefined {
    for (const r of this.ranges) {
      if (addr >= r.base && addr < r.base + r.size) return { device: r.device, offset: addr - r.base };
    }
    return undefined;
  }
}
