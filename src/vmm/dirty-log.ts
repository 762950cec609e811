/**
 * The pages of guest RAM written while a dirty log runs, whoever wrote them: vCPUs (KVM's dirty
 * log, KVM_MEM_LOG_DIRTY_PAGES on every memory slot) and the VMM's own devices (GuestMemory's
 * log of virtio rings, disk reads, received frames). Live snapshots — and anything else that
 * copies RAM while the guest runs — take it in rounds: each `take()` returns what was written
 * since the previous one, so a page copied after its bit was taken and written again shows up
 * in the next round.
 */
import type { VmFd } from '../kvm/vm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { PageBitmap } from '../memory/page-bitmap.js';

export class DirtyLog {
  private stopped = false;

  get running(): boolean {
    return !this.stopped;
  }

  /** Turns logging on: from here every write to guest RAM is recorded. */
  constructor(private readonly vmFd: VmFd, private readonly memory: GuestMemory) {
    memory.startDirtyLog();
    try {
      // Memory slot i is region i (builder.ts); a slot starts logging with an empty bitmap.
      for (const r of memory.regions) vmFd.setDirtyLogging(r.index, true);
    } catch (e) {
      this.stop();
      throw e;
    }
  }

  /** Per region, indexed by region index: the pages written since the last take (or the start). */
  take(): PageBitmap[] {
    if (this.stopped) throw new Error('DirtyLog: taken after stop');
    // KVM's log first: a device write that races with it lands in the VMM's log, taken right after.
    const kvm = this.memory.regions.map((r) => this.vmFd.getDirtyLog(r.index));
    const vmm = this.memory.takeDirty();
    const out: PageBitmap[] = [];
    this.memory.regions.forEach((r, i) => {
      const b = new PageBitmap(r.size);
      b.orKvm(kvm[i]!);
      b.or(vmm[i]!);
      out[r.index] = b;
    });
    return out;
  }

  /** Turns logging off (KVM stops write-protecting the slots). Safe to call more than once. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.memory.stopDirtyLog();
    for (const r of this.memory.regions) {
      // Only fails on a VM fd being closed, which logs nothing more anyway; the others still turn off.
      try { this.vmFd.setDirtyLogging(r.index, false); } catch { continue; }
    }
  }
}
