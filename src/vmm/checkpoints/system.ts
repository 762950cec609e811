/**
 * System checkpoints: memory, device state and a point-in-time of every disk. On the paused VM the
 * memory snapshot is written first (it records each disk's current image and identity), then
 * every writable disk moves to a fresh overlay, so the recorded images are frozen from then on.
 * A `disks.json` next to `vm.json` marks the directory as a checkpoint and lists the frozen
 * images; the directory only appears (one rename) once both are complete.
 *
 * Restoring a checkpoint never writes the frozen images: each restore creates its own new
 * overlay over them first (a clone per restore), then restores memory over the overlays.
 */
import { readFile, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { snapshotUrlToPath } from '../../snapshot/index.js';
import { ConfigError } from '../../errors.js';
import type { DiskConfig, VmConfig } from '../config.js';
import type { RestoreRequest } from '../requests.js';
import { checkDiskIdentity, diskIdentity } from '../disk-identity.js';
import type { FrozenDisk } from './frozen.js';
import { restoreVm, snapshotVm } from '../persist.js';
import { liveSnapshotVm } from '../live-snapshot.js';
import type { LiveSnapshotSummary, SnapshotSummary } from '../requests.js';
import type { Vm, VmHooks } from '../vm.js';
import { writeFileAtomic } from './atomic-file.js';
import { exists, syncDirectory } from '../../util/fs.js';
import { InvalidStateError } from '../errors.js';
import { CheckpointError } from './errors.js';
import { snapshotDiskLive, type DiskSnapshotResult } from './external.js';
import { createOverlay } from '../../block/chain/overlay.js';
import { lockedHandle } from '../../block/chain/lock.js';
import { stemOf } from './names.js';

export const CHECKPOINT_DISKS_FILE = 'disks.json';
const CHECKPOINT_VERSION = 1;


export interface CheckpointDisks {
  version: number;
  disks: FrozenDisk[];
}

export interface CheckpointSummary extends SnapshotSummary {
  disks: DiskSnapshotResult[];
  /** Time writing memory and device state (fsync'd), and switching every disk to its overlay. */
  memory_ms: number;
  disks_ms: number;
}

/** Where the running VM continues after the checkpoint, per disk: default next to the disk. */
export type OverlayNamer = (diskId: string, currentPath: string) => string;

/** Each disk's overlay next to its current image, named after it and the checkpoint's tag. */
export function defaultOverlayName(tag: string): OverlayNamer {
  return (_id, current) => join(dirname(current), `${stemOf(current)}.${tag}.qcow2`);
}

function withoutFormat({ format: _probed, ...disk }: DiskConfig): DiskConfig {
  return disk;
}

export interface CheckpointOptions {
  /**
   * Take it while the VM runs (live-snapshot.ts): memory is copied in rounds and the disks switch
   * in the same short pause as the last pages, so memory and disks are of one instant.
   */
  live?: boolean;
  /** Aborts a live checkpoint when the VM is being torn down. */
  signal?: AbortSignal;
}

/**
 * Writes a checkpoint of a paused VM (or of a running one, `live`) to `url`; its writable disks
 * continue on new overlays.
 */
export async function checkpointVm(vm: Vm, url: string, overlayFor: OverlayNamer, options: CheckpointOptions = {}): Promise<CheckpointSummary | (CheckpointSummary & LiveSnapshotSummary)> {
  const live = options.live === true;
  if (vm.state !== (live ? 'Running' : 'Paused')) throw new InvalidStateError(`the VM must be ${live ? 'running for a live' : 'paused for a'} checkpoint (it is ${vm.state})`);
  const dir = snapshotUrlToPath(url);
  if (await exists(dir)) throw new ConfigError(`${dir} already exists: a checkpoint is never written over another; choose a new destination`);
  const staging = `${dir}.ckpt-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  // The overlays are qcow2 whatever the disks are now: a restore must probe, not trust `raw`.
  const configNow = (): VmConfig => {
    const current = vm.config;
    return { ...current, disks: current.disks.map((d) => (d.readonly ? d : withoutFormat(d))) };
  };
  const frozen: FrozenDisk[] = [];
  const switched: DiskSnapshotResult[] = [];
  let disksMs = 0;
  /** Freezes every disk where it stands: the writable ones continue on new overlays. */
  const switchDisks = async (): Promise<void> => {
    const t = performance.now();
    for (const d of vm.platform.disks.filter((x) => !x.config.readonly)) {
      const r = await snapshotDiskLive(d, overlayFor(d.config.id, resolve(d.path)));
      switched.push(r);
      frozen.push(await frozenDiskOf(r, d.backend.size));
    }
    for (const d of vm.platform.disks.filter((x) => x.config.readonly)) {
      const path = resolve(d.path);
      frozen.push({ id: d.config.id, path, format: d.backend.format, size: d.backend.size, identity: await diskIdentity(path), readonly: true });
    }
    disksMs = performance.now() - t;
  };
  let summary: SnapshotSummary | LiveSnapshotSummary;
  const start = performance.now();
  try {
    // Live, the disks switch inside the snapshot's pause; paused, right after the memory is written.
    summary = live
      ? await liveSnapshotVm(vm, pathToFileURL(staging).href, { configAt: configNow, whilePaused: switchDisks, signal: options.signal })
      : await snapshotVm(vm, pathToFileURL(staging).href, configNow());
    if (!live) await switchDisks();
    const doc: CheckpointDisks = { version: CHECKPOINT_VERSION, disks: frozen };
    await writeFileAtomic(join(staging, CHECKPOINT_DISKS_FILE), `${JSON.stringify(doc, null, 2)}\n`);
    await rename(staging, dir);
    await syncDirectory(dirname(dir));
  } catch (e) {
    // Disks already switched stay on their overlays: the guest lost nothing, only the checkpoint failed.
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
  const memoryMs = performance.now() - start - (live ? 0 : disksMs);
  return { ...summary, destination: dir, disks: switched, memory_ms: memoryMs, disks_ms: disksMs };
}

/** The record of an image a snapshot just froze (identity taken once it can no longer change). */
export async function frozenDiskOf(r: DiskSnapshotResult, size: number): Promise<FrozenDisk> {
  return { id: r.disk, path: r.frozen, format: r.frozen_format, size, identity: await diskIdentity(r.frozen) };
}

/** The frozen-disk list of a checkpoint directory, or null for a plain memory snapshot. */
export async function readCheckpointDisks(dir: string): Promise<CheckpointDisks | null> {
  let text: string;
  try {
    text = await readFile(join(dir, CHECKPOINT_DISKS_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CheckpointError(`cannot read ${join(dir, CHECKPOINT_DISKS_FILE)}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${join(dir, CHECKPOINT_DISKS_FILE)} is not valid JSON: ${(e as Error).message}`);
  }
  const d = doc as CheckpointDisks;
  const ok = typeof d === 'object' && d !== null && d.version === CHECKPOINT_VERSION && Array.isArray(d.disks)
    && d.disks.every((x) => typeof x?.id === 'string' && typeof x.path === 'string' && typeof x.format === 'string'
      && Number.isSafeInteger(x.size) && typeof x.identity === 'object' && x.identity !== null);
  if (!ok) throw new CheckpointError(`${join(dir, CHECKPOINT_DISKS_FILE)} is not a version ${CHECKPOINT_VERSION} checkpoint disk list`);
  return d;
}

export interface CheckpointRestore {
  vm: Vm;
  /** Overlay created for each disk (id → path). */
  overlays: Record<string, string>;
}

/**
 * Restores a checkpoint: checks every frozen image is unchanged, creates a new overlay over each
 * (`req.disk_paths[id]` names it; default `<frozen stem>.<tag>.qcow2` next to the frozen image),
 * and restores memory and devices over the overlays. The VM comes back Paused.
 */
export async function restoreCheckpoint(req: RestoreRequest, disks: CheckpointDisks, hooksFor: (config: VmConfig) => VmHooks, tag = `restore-${Date.now()}`): Promise<CheckpointRestore> {
  const overlays: Record<string, string> = {};
  const writable = disks.disks.filter((d) => d.readonly !== true);
  for (const id of Object.keys(req.disk_paths ?? {})) {
    if (!writable.some((d) => d.id === id)) throw new ConfigError(`restore: the checkpoint has no writable disk "${id}" (its writable disks: ${writable.map((d) => d.id).join(', ') || 'none'})`);
  }
  for (const f of disks.disks) {
    // A frozen image that changed would give the guest a disk its memory does not match.
    await checkDiskIdentity({ id: f.id, path: f.path, readonly: true }, f.identity, req.force ?? false);
  }
  try {
    for (const f of writable) {
      const overlay = resolve(req.disk_paths?.[f.id] ?? join(dirname(f.path), `${stemOf(f.path)}.${tag}.qcow2`));
      await createOverlay(overlay, f.path, f.format, f.size);
      overlays[f.id] = overlay;
    }
    // Identities were checked on the frozen images above; the overlays are new by construction,
    // and the backing file each names is the frozen image tsvmm recorded.
    const vm = await restoreVm({ ...req, disk_paths: { ...req.disk_paths, ...overlays }, force: true, backing_files: true }, hooksFor);
    try {
      for (const f of writable) {
        const disk = vm.platform.disks.find((d) => d.config.id === f.id);
        if (disk !== undefined) await disk.holdBackingLock(f.path, await lockedHandle(f.path, 'read'));
      }
    } catch (e) {
      await vm.close();
      throw e;
    }
    return { vm, overlays };
  } catch (e) {
    for (const p of Object.values(overlays)) await rm(p, { force: true });
    throw e;
  }
}
