import { describe, expect, it } from 'vitest';
import { DeviceStateError } from '../../src/devices/errors.js';
import { vcpuStateFromJson } from '../../src/vmm/vcpu-state.js';
import { vmLevelStateFromJson } from '../../src/vmm/vm-state.js';

const bytes = new Uint8Array(8);
const vcpu = {
  id: 0, mp_state: 0, tsc_khz: 2_000_000, fpu: bytes, xsave: bytes, lapic: bytes, debugregs: bytes, vcpu_events: bytes,
  regs: {}, sregs: {}, xcrs: {}, msrs: [], cpuid: [],
};
const vm = { irqchips: [bytes, bytes, bytes], pit: bytes, clock: { clock: 1n, flags: 0, realtime: 0n, host_tsc: 0n } };

describe('saved VM and vCPU state', () => {
  it('accepts what a snapshot holds', () => {
    expect(vcpuStateFromJson(vcpu, 0)).toBe(vcpu);
    expect(vmLevelStateFromJson(vm)).toBe(vm);
  });

  it('refuses a missing or mistyped field with EDEVSTATE naming it', () => {
    expect(() => vcpuStateFromJson({ ...vcpu, lapic: 'x' }, 1)).toThrow(/vcpu 1: invalid saved state: lapic must be a byte string/);
    expect(() => vcpuStateFromJson({ ...vcpu, msrs: undefined }, 0)).toThrow(DeviceStateError);
    expect(() => vcpuStateFromJson(null, 0)).toThrow(/state is not an object/);
    expect(() => vmLevelStateFromJson({ ...vm, pit: [] })).toThrow(/vm: invalid saved state: pit must be a byte string/);
    expect(() => vmLevelStateFromJson({ ...vm, clock: { ...vm.clock, clock: 1 } })).toThrow(/clock fields have wrong types/);
  });
});
