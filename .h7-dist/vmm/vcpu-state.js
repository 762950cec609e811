import { TsvmmError } from '../errors.js';
/**
 * MSRs never written back: IA32_ARCH_CAPABILITIES (0x10a) is read-only on these hosts
 * (writes fail under PVM), and KVM itself rejects it from userspace on many hosts.
 */
const NEVER_RESTORED = new Set([0x10a]);
/**
 * The MSRs of `msrIndexList` that this host lets us both read and write back, probed once per VM
 * on a vCPU that is not running (one ioctl pair per MSR, a few hundred microseconds in all).
 */
export function probeSaveableMsrs(vcpu, indexList) {
    const ok = [];
    for (const index of indexList) {
        if (NEVER_RESTORED.has(index))
            continue;
        try {
            const entries = vcpu.getMsrs([index]);
            vcpu.setMsrs(entries);
            ok.push(index);
        }
        catch {
            // Not readable or not writable on this host: it cannot round-trip through a snapshot.
        }
    }
    return ok;
}
/** Reads the state of a stopped vCPU thread. */
export async function saveVcpu(t, msrIndices) {
    const mp_state = await t.call('getMpState');
    const regs = await t.call('getRegs');
    const sregs = await t.call('getSregs');
    const fpu = await t.call('getFpu');
    const xsave = await t.call('getXsave');
    const xcrs = await t.call('getXcrs');
    const msrs = await t.call('getMsrs', msrIndices);
    const lapic = await t.call('getLapic');
    const debugregs = await t.call('getDebugregs');
    const tsc_khz = await t.call('getTscKhz');
    const cpuid = await t.call('getCpuid2');
    const vcpu_events = await t.call('getVcpuEvents');
    return { id: t.id, mp_state, regs, sregs, fpu, xsave, xcrs, msrs, lapic, debugregs, tsc_khz, cpuid, vcpu_events };
}
/** Applies a saved state to a freshly created vCPU (on the main thread, before its worker runs). */
export function restoreVcpu(v, s) {
    v.setCpuid2(s.cpuid);
    // A guest calibrated its clocks against the TSC rate it was saved with: keep that rate when
    // this host's differs (needs TSC scaling; without it the guest's sense of time would drift).
    if (s.tsc_khz !== 0 && v.getTscKhz() !== s.tsc_khz) {
        try {
            v.setTscKhz(s.tsc_khz);
        }
        catch (e) {
            throw new TsvmmError('EHOSTMISMATCH', `the snapshot's TSC runs at ${s.tsc_khz} kHz, this host's at ${v.getTscKhz()} kHz, and KVM cannot scale it here (${e.message}); restore on a host with the same TSC rate`);
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
//# sourceMappingURL=vcpu-state.js.map