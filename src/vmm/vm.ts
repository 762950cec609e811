/**
 * One running (or paused) virtual machine: the KVM VM fd, guest RAM, vCPU threads and devices,
 * and what can happen to it at run time (start, pause, resume, save state, end, close). It is
 * built by builder.ts (boot or restore).
 */
import type { Kvm } from '../kvm/system.js';
import type { KvmClockData } from '../kvm/types.js';
import type { VcpuFd } from '../kvm/vcpu.js';
import type { IrqchipId, VmFd } from '../kvm/vm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { unmapRegions, type MappedRegion } from '../memory/regions.js';
import type { VmConfig, VmState } from './config.js';
import { InvalidStateError } from './errors.js';
import type { VmEnd } from './exit-status.js';
import type { Platform, PlatformHooks } from './platform.js';
import { saveVcpu, type VcpuState } from './vcpu-state.js';
import { DirtyLog } from './dirty-log.js';
import type { VmSavedState } from './vm-state.js';
import type { StopReason } from './vcpu-protocol.js';
import type { VcpuThread } from './vcpu-thread.js';

/** The in-kernel irqchips (PIC master, PIC slave, IOAPIC), saved and restored in this order. */
export const IRQCHIPS: readonly IrqchipId[] = [0, 1, 2];

export interface VmHooks extends PlatformHooks {
  /** The guest ended the VM (power-off, reset, triple fault) or a vCPU failed. */
  onEnd(end: VmEnd): void;
}

/** The KVM objects and memory a VM is made of (the builder makes them, the VM owns them). */
export interface Parts {
  kvm: Kvm;
  vmFd: VmFd;
  regions: MappedRegion[];
  memory: GuestMemory;
  platform: Platform;
  vcpus: VcpuFd[];
}

export class Vm {
  state: VmState = 'Created';
  private ended = false;
  /** kvmclock captured at pause, written back at resume so guest time does not jump. */
  private pausedClock: KvmClockData | undefined;
  private dirtyLog: DirtyLog | undefined;

  /** Called by the builder once every part exists; the VM then owns (and closes) them. */
  constructor(
    /** The config the VM was built from (never changed; `config` is the current one). */
    private readonly built: VmConfig,
    private readonly parts: Parts,
    readonly threads: VcpuThread[],
    /** The MSRs that round-trip on this host, saved in snapshots. */
    readonly msrIndices: number[],
    private readonly hooks: VmHooks,
  ) {}

  /**
   * The config as it stands now: as built, with each disk's current image (a disk snapshot or a
   * block job moves a running disk to another file). vm.info reports it, a reboot boots it.
   */
  get config(): VmConfig {
    const net = this.platform.netConfigs();
    return { ...this.built, disks: this.platform.disks.map((d) => d.currentConfig()), ...(net.length === 0 ? {} : { net }) };
  }

  get memory(): GuestMemory { return this.parts.memory; }
  get regions(): readonly MappedRegion[] { return this.parts.regions; }
  get platform(): Platform { return this.parts.platform; }

  /**
   * A VM the builder restored: Paused, as the snapshot was taken, with the saved kvmclock to
   * write back at resume; its disks take no request until then.
   */
  async enterRestoredPause(clock: KvmClockData): Promise<void> {
    if (this.state !== 'Created') throw new InvalidStateError(`cannot restore into a VM that is ${this.state}`);
    this.pausedClock = clock;
    await this.platform.quiesce();
    this.state = 'Paused';
  }

  /** Starts every vCPU of a freshly built VM. */
  start(): void {
    if (this.state !== 'Created') throw new InvalidStateError(`cannot boot a VM that is ${this.state}`);
    this.runThreads();
    this.state = 'Running';
  }

  private runThreads(): void {
    for (const t of this.threads) {
      void t.run().then((reason) => this.onThreadStopped(t.id, reason));
    }
  }

  private onThreadStopped(vcpu: number, reason: StopReason): void {
    switch (reason.kind) {
      case 'kicked':
        return;
      case 'shutdown':
        this.end({ kind: 'triple_fault', vcpu, where: reason.where });
        return;
      case 'system_event':
        // KVM_SYSTEM_EVENT_SHUTDOWN = 1, RESET = 2, CRASH = 3.
        this.end(reason.type === 1 ? { kind: 'poweroff', status: 0 } : reason.type === 2 ? { kind: 'reset' } : { kind: 'vcpu_error', vcpu, message: `guest crash event (${reason.type})` });
        return;
      case 'internal_error':
        this.end({ kind: 'vcpu_error', vcpu, message: reason.message });
        return;
      case 'fail_entry':
        this.end({ kind: 'vcpu_error', vcpu, message: `KVM entry failed: ${reason.reason}` });
        return;
      case 'error':
        this.end({ kind: 'vcpu_error', vcpu, message: reason.message });
        return;
    }
  }

  /** Reports the end of the VM once; the owner then disposes of it. */
  end(end: VmEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.hooks.onEnd(end);
  }

  /** Stops every vCPU, waits until no disk request is in flight, and freezes kvmclock. */
  async pause(): Promise<void> {
    if (this.state !== 'Running') throw new InvalidStateError(`cannot pause a VM that is ${this.state}`);
    await Promise.all(this.threads.map((t) => t.stop()));
    await this.platform.quiesce();
    this.pausedClock = this.parts.vmFd.getClock();
    this.state = 'Paused';
  }

  async resume(): Promise<void> {
    if (this.state !== 'Paused') throw new InvalidStateError(`cannot resume a VM that is ${this.state}`);
    if (this.pausedClock !== undefined) {
      // Only the clock value is written back; the flags describe how it was read.
      this.parts.vmFd.setClock({ ...this.pausedClock, flags: 0 });
      this.pausedClock = undefined;
    }
    this.platform.unquiesce();
    this.runThreads();
    this.state = 'Running';
  }

  /**
   * Starts recording every write to guest RAM (see DirtyLog); the caller stops the log. One at a
   * time: each running log makes the guest's first write to every page after a take fault.
   */
  startDirtyLog(): DirtyLog {
    if (this.state !== 'Running' && this.state !== 'Paused') throw new InvalidStateError(`cannot log the memory writes of a VM that is ${this.state}`);
    if (this.dirtyLog?.running === true) throw new InvalidStateError('a dirty log is already running (a live snapshot is in progress)');
    this.dirtyLog = new DirtyLog(this.parts.vmFd, this.parts.memory);
    return this.dirtyLog;
  }

  /** Component state of a paused VM, for a snapshot. */
  async saveState(): Promise<VmSavedState> {
    if (this.state !== 'Paused' || this.pausedClock === undefined) throw new InvalidStateError(`the VM must be paused to save its state (it is ${this.state})`);
    // Every vCPU's worker at once (each is stopped; their calls do not interleave).
    const vcpus: VcpuState[] = await Promise.all(this.threads.map((t) => saveVcpu(t, this.msrIndices)));
    const vmFd = this.parts.vmFd;
    return {
      vcpus,
      vm: { irqchips: IRQCHIPS.map((c) => vmFd.getIrqchip(c)), pit: vmFd.getPit2(), clock: this.pausedClock },
      platform: this.platform.state(),
    };
  }

  counters(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    this.threads.forEach((t) => { out[`vcpu${t.id}`] = t.counters(); });
    Object.assign(out, this.platform.counters());
    // The vCPU threads answer unclaimed ports themselves; the bus's count covers them too.
    out['bus']!['unclaimed_accesses']! += this.threads.reduce((n, t) => n + t.unclaimedPorts(), 0);
    return out;
  }

  /** Stops everything and releases every resource. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.state === 'Shutdown') return;
    this.state = 'Shutdown';
    await Promise.all(this.threads.map((t) => t.close()));
    await this.platform.close();
    for (const v of this.parts.vcpus) v.close();
    unmapRegions(this.parts.regions);
    this.parts.vmFd.close();
    this.parts.kvm.close();
  }
}
