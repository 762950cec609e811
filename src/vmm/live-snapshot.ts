/**
 * Live snapshots: the snapshot of a running VM, with the guest paused only for the last few
 * pages. Memory is copied while the guest runs — all of it once, then in rounds the pages
 * written since the previous round (DirtyLog: vCPU writes through KVM's dirty log, device writes
 * through GuestMemory's) — until what is left is small enough to copy within the pause target,
 * or more rounds stop helping. Then the VM is paused, the last dirty pages, the vCPU and device
 * state (and, for a checkpoint, the disk switch) are taken, and it resumes. The memory files are
 * checksummed and vm.json committed afterwards, while the guest runs: the result is an ordinary
 * snapshot directory, written as atomically as a paused one (SnapshotStaging).
 */
import { snapshotUrlToPath, LiveRegionFile, SnapshotStaging, regionEntry } from '../snapshot/index.js';
import { PAGE_SIZE, type PageBitmap } from '../memory/page-bitmap.js';
import type { VmConfig } from './config.js';
import { snapshotContent, summaryOf, touchedExtents } from './persist.js';
import type { LiveSnapshotRound, LiveSnapshotSummary } from './requests.js';
import type { Vm } from './vm.js';

/** Guest pause the rounds aim for: copying what is left is estimated to take at most this. */
const TARGET_COPY_MS = 5;
/**
 * Rounds after the first full copy. A guest that dirties memory faster than it can be copied
 * never gets below the target; it is paused after this many rounds (or as soon as a round no
 * longer shrinks the dirty set), and the pause grows with its dirty rate.
 */
const MAX_DIRTY_ROUNDS = 8;

export interface LiveSnapshotOptions {
  /** The config vm.json records, read while paused (a block job may move a disk until then). */
  configAt?: () => VmConfig;
  /** Runs while the VM is paused, after its state is taken (a checkpoint switches its disks here). */
  whilePaused?: () => Promise<void>;
  /** Aborted when the VM is being torn down: the snapshot stops reading guest RAM at once. */
  signal?: AbortSignal;
}

function pagesIn(bitmaps: readonly PageBitmap[]): number {
  return bitmaps.reduce((n, b) => n + b.count(), 0);
}

/** Writes a snapshot of the running `vm` to `url` (file:///dir) while it runs; it runs on afterwards. */
export async function liveSnapshotVm(vm: Vm, url: string, options: LiveSnapshotOptions = {}): Promise<LiveSnapshotSummary> {
  const start = performance.now();
  const { signal } = options;
  const staging = await SnapshotStaging.open(snapshotUrlToPath(url));
  const files: LiveRegionFile[] = [];
  let log;
  let paused = false;
  try {
    // Files in vm.regions order, as snapshotVm writes them; dirty bitmaps are by region index.
    for (const [i, r] of vm.regions.entries()) files.push(await LiveRegionFile.create(staging.regionPath(i), r.size));
    log = vm.startDirtyLog();
    const rounds: LiveSnapshotRound[] = [];
    // Round one: everything the guest ever touched, written while it keeps running.
    let t = performance.now();
    let bytes = 0;
    for (const [i, r] of vm.regions.entries()) bytes += await files[i]!.copyAll(r.bytes, touchedExtents(r), { signal });
    rounds.push({ pages: bytes / PAGE_SIZE, bytes, ms: performance.now() - t });
    let msPerPage = rounds[0]!.ms / Math.max(1, rounds[0]!.pages);
    let dirty = log.take();
    let pages = pagesIn(dirty);
    let converged = true;
    for (let round = 1; pages * msPerPage > TARGET_COPY_MS; round++) {
      if (round > MAX_DIRTY_ROUNDS || (round > 1 && pages >= rounds.at(-1)!.pages)) {
        converged = false;
        break;
      }
      t = performance.now();
      bytes = 0;
      for (const [i, r] of vm.regions.entries()) bytes += await files[i]!.copyDirty(r.bytes, dirty[r.index]!, { signal });
      const ms = performance.now() - t;
      rounds.push({ pages, bytes, ms });
      msPerPage = ms / Math.max(1, pages);
      dirty = log.take();
      pages = pagesIn(dirty);
    }
    signal?.throwIfAborted();
    // The pause: the pages dirtied since the last take and the VM's state, then run again.
    const phases = { stop_ms: 0, copy_ms: 0, state_ms: 0, disks_ms: 0, resume_ms: 0 };
    let mark = performance.now();
    const phase = (name: keyof typeof phases): void => { const now = performance.now(); phases[name] = now - mark; mark = now; };
    const pauseStart = mark;
    await vm.pause();
    paused = true;
    phase('stop_ms');
    const last = log.take();
    for (const r of vm.regions) dirty[r.index]!.or(last[r.index]!);
    const finalPages = pagesIn(dirty);
    for (const [i, r] of vm.regions.entries()) await files[i]!.copyDirty(r.bytes, dirty[r.index]!, { blocking: true });
    phase('copy_ms');
    const content = await snapshotContent(vm, options.configAt?.() ?? vm.config);
    phase('state_ms');
    await options.whilePaused?.();
    phase('disks_ms');
    await vm.resume();
    paused = false;
    phase('resume_ms');
    const pauseMs = performance.now() - pauseStart;
    log.stop();
    const regions = [];
    for (const [i, r] of vm.regions.entries()) regions.push(regionEntry(i, r.guestBase, r.size, await files[i]!.finish(staging.algorithm)));
    const result = await staging.commit(content, regions);
    return {
      ...summaryOf(result), live: true, pause_ms: pauseMs, pause_phases: phases, total_ms: performance.now() - start, rounds, final_pages: finalPages, converged,
    };
  } catch (e) {
    // The guest must not stay paused because its snapshot failed.
    if (paused && vm.state === 'Paused') await vm.resume();
    log?.stop();
    await Promise.all(files.map((f) => f.abandon()));
    await staging.abandon();
    throw e;
  }
}
