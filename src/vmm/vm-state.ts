/**
 * The saved state of a VM besides memory, and the checks a restore makes on its VM-wide part
 * before any of it reaches KVM (as the devices' fromState functions check theirs).
 */
import { DeviceStateError } from '../devices/errors.js';
import type { KvmClockData } from '../kvm/types.js';
import type { PlatformState } from './platform.js';
import type { VcpuState } from './vcpu-state.js';

/** VM-wide KVM state: PIC master/slave and IOAPIC, the PIT, and kvmclock at the pause. */
export interface VmLevelState {
  irqchips: Uint8Array[];
  pit: Uint8Array;
  clock: KvmClockData;
}

/** Everything a snapshot holds besides memory. */
export interface VmSavedState {
  vcpus: VcpuState[];
  vm: VmLevelState;
  platform: PlatformState;
}

/** `value` (a snapshot's decoded `vm` object) as a VmLevelState, or EDEVSTATE naming the bad field. */
export function vmLevelStateFromJson(value: unknown): VmLevelState {
  const bad = (message: string): never => {
    throw new DeviceStateError('vm', message);
  };
  if (typeof value !== 'object' || value === null) bad('state is not an object');
  const s = value as Record<string, unknown>;
  if (!Array.isArray(s.irqchips) || !s.irqchips.every((c) => c instanceof Uint8Array)) bad('irqchips must be a list of byte strings');
  if (!(s.pit instanceof Uint8Array)) bad('pit must be a byte string');
  const clock = s.clock as Record<string, unknown> | null;
  if (typeof clock !== 'object' || clock === null) bad('clock must be an object');
  if (typeof clock!.clock !== 'bigint' || typeof clock!.realtime !== 'bigint' || typeof clock!.host_tsc !== 'bigint' || typeof clock!.flags !== 'number') {
    bad('clock fields have wrong types');
  }
  return s as unknown as VmLevelState;
}
