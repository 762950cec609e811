/**
 * Saving and restoring one vCPU's architectural state, in the order Cloud Hypervisor uses:
 * save mp_state first and vcpu_events last; restore cpuid, mp_state, regs, sregs, xsave, xcrs,
 * lapic, fpu, msrs, vcpu_events — later steps depend on earlier ones (e.g. MSR writes are checked
 * against CPUID, and pending events must be injected into a fully formed CPU).
 */
import type { KvmCpuidEntry2, KvmMsrEntry, KvmRegs, KvmSregs, KvmXcrs } from '../kvm/types.js';
import type { VcpuFd } from '../kvm/vcpu.js';
import type { VcpuThread } from './vcpu-thread.js';
import { DeviceStateError } from '../devices/errors.js';
import { TsvmmError } from '../errors.js';

export interface VcpuState {
  id: number;
  mp_state: number;
  regs: KvmRegs;
  sregs: KvmSregs;
  fpu: Uint8Array;
  xsave: Uint8Array;
  xcrs: KvmXcrs;
  msrs: KvmMsrEntry[];
  lapic: Uint8Array;
  debugregs: Uint8Array;
  tsc_khz: number;
  cpuid: KvmCpuidEntry2[];
  vcpu_events: Uint8Array;
}

/** `value` (a snapshot's decoded vcpus[index]) as a VcpuState, or EDEVSTATE naming the bad field. */
export function vcpuStateFromJson(value: unknown, index: number): VcpuState {
  const bad = (message: string): never => {
    throw new DeviceStateError(`vcpu ${index}`, message);
  };
  if (typeof value !== 'object' || value === null) bad('state is not an object');
  const s = value as Record<string, unknown>;
  for (const k of ['id', 'mp_state', 'tsc_khz']) if (typeof s[k] !== 'number') bad(`${k} must be a number`);
  for (const k of ['fpu', 'xsave', 'lapic', 'debugregs', 'vcpu_events']) if (!(s[k] instanceof Uint8Array)) bad(`${k} must be a byte string`);
  for (const k of ['regs', 'sregs', 'xcrs']) if (typeof s[k] !== 'object' || s[k] === null) bad(`${k} must be an object`);
  for (const k of ['msrs', 'cpuid']) if (!Array.isArray(s[k])) bad(`${k} must be a list`);
  return s as unknown as VcpuState;
}

/**
 * MSRs never written back: IA32_ARCH_CAPABILITIES (0x10a) is read-only on these hosts
 * (writes fail under PVM), and KVM itself rejects it from userspace on many hosts.
 */
const NEVER_RESTORED = new Set([0x10a]);

/**
 * The MSRs of `msrIndexList` that this host lets us both read and write back, probed once per VM
 * on a vCPU that is not running (one ioctl pair per MSR, a few hundred microseconds in all).
 */
export function probeSaveableMsrs(vcpu: VcpuFd, indexList: readonly number[]): number[] {
  const ok: number[] = [];
  for (const index of indexList) {
    if (NEVER_RESTORED.has(index)) continue;
    try {
      const entries = vcpu.getMsrs([index]);
      vcpu.setMsrs(entries);
      ok.push(index);
    } catch {
      // Not readable or not writable on this host: it cannot round-trip through a snapshot.
    }
  }
  return ok;
}

/** Reads the state of a stopped vCPU thread. */
export async function saveVcpu(t: VcpuThread, msrIndices: readonly number[]): Promise<VcpuState> {
  // Sent all at once: the worker answers in order, and twelve round trips one after the other
  // were most of a live snapshot's pause (nested, 2 vCPUs: state saved in 550-730 ms before,
  // 70-110 ms after, though the first figures were taken on a busier host).
  const [mp_state, regs, sregs, fpu, xsave, xcrs, msrs, lapic, debugregs, tsc_khz, cpuid, vcpu_events] = await Promise.all([
    t.call<number>('getMpState'),
    t.call<KvmRegs>('getRegs'),
    t.call<KvmSregs>('getSregs'),
    t.call<Uint8Array>('getFpu'),
    t.call<Uint8Array>('getXsave'),
    t.call<KvmXcrs>('getXcrs'),
    t.call<KvmMsrEntry[]>('getMsrs', msrIndices),
    t.call<Uint8Array>('getLapic'),
    t.call<Uint8Array>('getDebugregs'),
    t.call<number>('getTscKhz'),
    t.call<KvmCpuidEntry2[]>('getCpuid2'),
    t.call<Uint8Array>('getVcpuEvents'),
  ]);
  return { id: t.id, mp_state, regs, sregs, fpu, xsave, xcrs, msrs, lapic, debugregs, tsc_khz, cpuid, vcpu_events };
}

export function restoreVcpu(v: VcpuFd, s: VcpuState): void {
  v.setCpuid2(s.cpuid);
  // A guest calibrated its clocks against the TSC rate it was saved with: keep that rate when
  // this host's differs (needs TSC scaling; without it the guest's sense of time would drift).
  if (s.tsc_khz !== 0 && v.getTscKhz() !== s.tsc_khz) {
    try {
      v.setTscKhz(s.tsc_khz);
    } catch (e) {
      throw new TsvmmError('EHOSTMISMATCH', `the snapshot's TSC runs at ${s.tsc_khz} kHz, this host's at ${v.getTscKhz()} kHz, and KVM cannot scale it here (${(e as Error).message}); restore on a host with the same TSC rate`);
    }
  }
  v.setMpState(s.mp_state);
  v.setRegs(s.regs);
  v.setSregs(s.sregs);
  v.setXsave(s.xsave);
  v.setXcrs(s.xcrs);
  v.setLapic(s.lapic);
  v.setFpu(s.fpu);
  v.setMsrs(s.msrs.filter((m) => !NEVER_RESTORED.has(m.index)));
  v.setDebugregs(s.debugregs);
  v.setVcpuEvents(s.vcpu_events);
}
