/** The kernel command line: virtio-mmio device parameters, and a length-checked NUL-terminated write. */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { CommandLineError } from './errors.js';

export interface VirtioMmioDevice {
  readonly base: number;
  readonly size: number;
  readonly gsi: number;
}

function sizeParam(size: number): string {
  return size % 1024 === 0 ? `${size / 1024}K` : `${size}`;
}

/** `virtio_mmio.device=4K@0xd0000000:5` — the syntax of Linux's virtio_mmio and of QEMU microvm. */
export function virtioMmioParams(devices: readonly VirtioMmioDevice[]): string[] {
  return devices.map((d) => `virtio_mmio.device=${sizeParam(d.size)}@0x${d.base.toString(16)}:${d.gsi}`);
}

export function composeCommandLine(base: string, devices: readonly VirtioMmioDevice[], appendVirtio: boolean): string {
  const parts = [base.trim(), ...(appendVirtio ? virtioMmioParams(devices) : [])].filter((s) => s.length > 0);
  return parts.join(' ');
}

/** Encodes the command line, checking it for NULs and against `limit` (bytes, without the NUL). */
export function encodeCommandLine(cmdline: string, limit: number): Uint8Array {
  const bytes = new TextEncoder().encode(cmdline);
  if (bytes.includes(0)) throw new CommandLineError('kernel command line contains a NUL byte');
  if (bytes.length > limit) {
    throw new CommandLineError(`kernel command line is ${bytes.length} bytes; this kernel accepts at most ${limit}`, { length: bytes.length, limit });
  }
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

export function writeCommandLine(memory: GuestMemory, addr: number, cmdline: string, limit: number): number {
  const bytes = encodeCommandLine(cmdline, limit);
  memory.write(addr, bytes);
  return bytes.length - 1;
}
