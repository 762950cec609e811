/**
 * Disk snapshots and named checkpoints of the VMM's VM (virsh snapshot-create/list/revert/delete),
 * on top of live external snapshots (external.ts), system checkpoints (system.ts), the catalogue
 * (catalogue.ts) and layer merging (block/chain/drop.ts). The VMM serialises calls (one operation at a
 * time) and gives access to its VM through `VmmHost`.
 */
import { readdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { exists } from '../../util/fs.js';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../../errors.js';
import { ConflictError, InvalidStateError, NoVmError } from '../errors.js';
import type { VmConfig } from '../config.js';
import { diskById, type Disk } from '../disks.js';
import type { Vm, VmHooks } from '../vm.js';
import { diskIdentity } from '../disk-identity.js';
import { CATALOGUE_FILE, Catalogue, SNAPSHOT_NAME, type CatalogueEntry } from './catalogue.js';
import { dropLayer, readBackingOf } from '../../block/chain/drop.js';
import { lockedHandle } from '../../block/chain/lock.js';
import { layersOf, pathOf } from '../../block/chain/walk.js';
import { CheckpointError } from './errors.js';
import type { FrozenDisk } from './frozen.js';
import type {
  DiskSnapshotRequest, LastOperation, SnapshotCreateRequest, SnapshotListItem, SnapshotListing, SnapshotListRequest, SnapshotNameRequest,
} from './types.js';
import { snapshotDiskLive, type DiskSnapshotResult } from './external.js';
import { stemOf } from './names.js';
import { snapshotUrlToPath } from '../../snapshot/index.js';
import {
  checkpointVm, defaultOverlayName, frozenDiskOf, readCheckpointDisks, restoreCheckpoint, type CheckpointDisks, type CheckpointOptions, type CheckpointSummary,
} from './system.js';

export interface VmmHost {
  vm(): Vm | undefined;
  emit(event: string, properties: Record<string, unknown>): void;
  /** Closes the current VM, if any, without ending the VMM. */
  closeVm(): Promise<void>;
  /** Installs a restored (Paused) VM as the VMM's VM. */
  adoptVm(vm: Vm): void;
  hooksFor(config: VmConfig): VmHooks;
}

export class DiskSnapshotService {
  private explicitDir: string | undefined;
  last: LastOperation | undefined;

  constructor(private readonly host: VmmHost) {}

  private record(operation: string, result: Record<string, unknown>): void {
    this.last = { operation, finished: new Date().toISOString(), result };
    this.host.emit(operation, result);
  }

  private requireVm(): Vm {
    const vm = this.host.vm();
    if (vm === undefined || vm.state === 'Shutdown') throw new NoVmError();
    return vm;
  }

  // ---- live external snapshot and checkpoints ------------------------------------------------

  async snapshotDisk(req: DiskSnapshotRequest): Promise<DiskSnapshotResult> {
    const vm = this.requireVm();
    if (vm.state !== 'Running' && vm.state !== 'Paused') throw new InvalidStateError(`cannot snapshot a disk of a VM that is ${vm.state}`);
    const result = await snapshotDiskLive(diskById(vm.platform.disks, req.disk), req.file);
    this.record('disk-snapshotted', { ...result });
    return result;
  }

  async checkpoint(url: string, options: CheckpointOptions = {}): ReturnType<typeof checkpointVm> {
    const vm = this.requireVm();
    // The VM continues on `<disk stem>.<checkpoint folder name>.qcow2` next to each disk.
    const tag = basename(snapshotUrlToPath(url));
    return checkpointVm(vm, url, defaultOverlayName(tag), options);
  }

  // ---- the catalogue -----------------------------------------------------------------------

  /**
   * The snapshot dir: the request's; else the one a request last named explicitly; else
   * `<folder of disk 0>/<stem of its base image>.snapshots`.
   */
  private catalogueDir(requested: string | undefined): string {
    if (requested !== undefined) {
      this.explicitDir = resolve(requested);
      return this.explicitDir;
    }
    if (this.explicitDir !== undefined) return this.explicitDir;
    const vm = this.host.vm();
    const first = vm?.platform.disks[0];
    if (first !== undefined) {
      const root = pathOf(layersOf(first.backend).at(-1)!);
      return join(dirname(resolve(first.path)), `${stemOf(root)}.snapshots`);
    }
    throw new ConfigError('no snapshot dir: the VM has no disk to put it next to; give snapshot_dir');
  }

  private async catalogue(requested: string | undefined): Promise<Catalogue> {
    return Catalogue.load(this.catalogueDir(requested));
  }

  async create(req: SnapshotCreateRequest): Promise<CatalogueEntry> {
    if (!SNAPSHOT_NAME.test(req.name)) throw new ConfigError(`snapshot name "${req.name}": use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
    if (req.name.startsWith(CATALOGUE_FILE)) throw new ConfigError(`snapshot name "${req.name}" is reserved (the catalogue file's name)`);
    const vm = this.requireVm();
    if (vm.state !== 'Running' && vm.state !== 'Paused') throw new InvalidStateError(`cannot snapshot a VM that is ${vm.state}`);
    const cat = await this.catalogue(req.snapshot_dir);
    if (cat.has(req.name)) throw new ConflictError(`a snapshot named "${req.name}" already exists in ${cat.dir}; delete it or choose another name`);
    const root = (d: Disk): string => stemOf(pathOf(layersOf(d.backend).at(-1)!));
    const overlayFor = (d: Disk): string => join(dirname(resolve(d.path)), `${root(d)}.${req.name}.qcow2`);
    const vmState = vm.state;
    let frozen: FrozenDisk[];
    let pausedMs: number;
    let stateDir: string | null = null;
    let switched: DiskSnapshotResult[];
    let phases: Record<string, number> = {};
    if (req.disk_only === true) {
      // The guest keeps running; each disk's I/O is held only while it switches.
      switched = [];
      frozen = [];
      for (const d of vm.platform.disks.filter((x) => !x.config.readonly)) {
        const r = await snapshotDiskLive(d, overlayFor(d));
        switched.push(r);
        frozen.push(await frozenDiskOf(r, d.backend.size));
      }
      pausedMs = Math.max(0, ...switched.map((s) => s.io_pause_ms));
    } else {
      const start = performance.now();
      if (vmState === 'Running') await vm.pause();
      try {
        const byId = new Map(vm.platform.disks.map((d) => [d.config.id, overlayFor(d)]));
        const summary = await checkpointVm(vm, pathToFileURL(join(cat.dir, req.name)).href, (id) => byId.get(id)!);
        switched = summary.disks;
        phases = { memory_ms: summary.memory_ms, disks_ms: summary.disks_ms };
        stateDir = req.name;
      } finally {
        if (vmState === 'Running') await vm.resume();
      }
      pausedMs = performance.now() - start;
      frozen = (await this.checkpointDisks(join(cat.dir, req.name))).disks;
    }
    const entry: CatalogueEntry = {
      name: req.name, created: new Date().toISOString(), kind: req.disk_only === true ? 'disk-only' : 'system',
      parent: cat.current, description: req.description ?? '', vm_state: vmState === 'Running' ? 'Running' : 'Paused',
      state_dir: stateDir, paused_ms: pausedMs, disks: frozen,
    };
    await cat.update((doc) => {
      doc.snapshots.push(entry);
      for (const s of switched) doc.overlays.push({ disk: s.disk, path: s.overlay, backing: s.frozen });
      doc.current = entry.name;
    });
    this.record('snapshot-created', { name: entry.name, kind: entry.kind, paused_ms: pausedMs, ...phases, snapshot_dir: cat.dir });
    return entry;
  }

  private async checkpointDisks(dir: string): Promise<CheckpointDisks> {
    const d = await readCheckpointDisks(dir);
    if (d === null) throw new CheckpointError(`${dir} is not a checkpoint with disks`);
    return d;
  }

  /** The catalogue with sizes; synchronous (small reads) so the API can answer a GET at once. */
  list(req: SnapshotListRequest): SnapshotListing {
    const dir = this.catalogueDir(req.snapshot_dir);
    const cat = Catalogue.loadSync(dir);
    const created = new Set(cat.overlays.map((o) => o.path));
    const snapshots = cat.entries.map((e): SnapshotListItem => {
      let size = e.state_dir === null ? 0 : dirBytes(join(cat.dir, e.state_dir));
      for (const d of e.disks) if (created.has(d.path)) size += fileBytes(d.path);
      return {
        name: e.name, created: e.created, kind: e.kind, parent: e.parent, description: e.description, vm_state: e.vm_state,
        paused_ms: e.paused_ms, current: cat.current === e.name, size_bytes: size, disks: e.disks.map((d) => ({ id: d.id, path: d.path })),
      };
    });
    return { snapshot_dir: cat.dir, current: cat.current, snapshots };
  }

  /**
   * Brings back memory, devices and disks of a system snapshot: the current VM is closed, each
   * disk gets a new overlay over the snapshot's frozen image, and the VM runs again if it was
   * running when the snapshot was taken. The overlays the VM used until now are discarded when
   * this catalogue created them and nothing else builds on them (virsh discards the current state
   * the same way).
   */
  async revert(req: SnapshotNameRequest): Promise<void> {
    const cat = await this.catalogue(req.snapshot_dir);
    const entry = cat.get(req.name);
    if (entry.kind === 'disk-only' || entry.state_dir === null) {
      throw new InvalidStateError(`"${entry.name}" is a disk-only snapshot: without memory state it cannot be reverted under a live guest; boot a VM from its images (${entry.disks.map((d) => d.path).join(', ')})`);
    }
    const start = performance.now();
    const old = this.host.vm();
    const abandoned = old === undefined || old.state === 'Shutdown' ? [] : old.platform.disks.filter((d) => !d.config.readonly).map((d) => resolve(d.path));
    const diskPaths: Record<string, string> = {};
    const writable = entry.disks.filter((d) => d.readonly !== true);
    for (const d of writable) diskPaths[d.id] = await freeName((n) => join(dirname(d.path), `${stemOf(d.path).split('.')[0]}.${entry.name}-r${n}.qcow2`));
    await this.host.closeVm();
    const restored = await restoreCheckpoint(
      { source_url: pathToFileURL(join(cat.dir, entry.state_dir)).href, disk_paths: diskPaths },
      { version: 1, disks: entry.disks }, (c) => this.host.hooksFor(c),
    );
    this.host.adoptVm(restored.vm);
    await cat.update((doc) => {
      for (const d of writable) doc.overlays.push({ disk: d.id, path: restored.overlays[d.id]!, backing: d.path });
      doc.current = entry.name;
    });
    const discarded = await this.discardUnused(cat, abandoned);
    if (entry.vm_state === 'Running') await restored.vm.resume();
    this.record('snapshot-reverted', { name: entry.name, duration_ms: performance.now() - start, running: entry.vm_state === 'Running', discarded });
  }

  /** Deletes catalogue-created overlays in `paths` that no snapshot and no other overlay uses. */
  private async discardUnused(cat: Catalogue, paths: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const p of paths) {
      if (!cat.overlays.some((o) => o.path === p)) continue;
      if (cat.entries.some((e) => e.disks.some((d) => d.path === p))) continue;
      if ((await this.childrenOf(cat, p)).length > 0) continue;
      await cat.update((doc) => { doc.overlays = doc.overlays.filter((o) => o.path !== p); });
      await rm(p, { force: true });
      out.push(p);
    }
    return out;
  }

  /** Catalogue overlays whose header names `path` as backing file (read from the files). */
  private async childrenOf(cat: Catalogue, path: string): Promise<string[]> {
    const out: string[] = [];
    for (const o of cat.overlays) {
      const b = await readBackingOf(o.path).catch(() => null);
      if (b !== null && resolve(b) === path) out.push(o.path);
    }
    return out;
  }

  /**
   * Deletes a snapshot. Its memory state goes; its frozen images stay whenever anything still
   * builds on them. When a frozen image was created by this catalogue and exactly one image
   * builds on it, its data is merged up into that image (copy-up, never overwriting newer data)
   * and the image is rebased past it, so the chain gets shorter and no other snapshot changes
   * content; snapshots that froze the merged-into image get their identity refreshed.
   */
  async delete(req: SnapshotNameRequest): Promise<void> {
    const cat = await this.catalogue(req.snapshot_dir);
    const entry = cat.get(req.name);
    const start = performance.now();
    // First the entry goes (nothing points at its files any more), then the files.
    await cat.update((doc) => {
      doc.snapshots = doc.snapshots.filter((s) => s.name !== entry.name);
      for (const s of doc.snapshots) if (s.parent === entry.name) s.parent = entry.parent;
      if (doc.current === entry.name) doc.current = entry.parent;
    });
    const merged: Array<{ dropped: string; into: string }> = [];
    for (const f of entry.disks) {
      const into = await this.mergeAway(cat, f);
      if (into !== null) merged.push({ dropped: f.path, into });
    }
    if (entry.state_dir !== null) await rm(join(cat.dir, entry.state_dir), { recursive: true, force: true });
    this.record('snapshot-deleted', { name: entry.name, merged, duration_ms: performance.now() - start });
  }

  /** Merges frozen image `f` up into its only child when that is safe; returns the child or null. */
  private async mergeAway(cat: Catalogue, f: FrozenDisk): Promise<string | null> {
    if (!cat.overlays.some((o) => o.path === f.path)) return null; // the user's own image: never touched
    if (cat.entries.some((e) => e.disks.some((d) => d.path === f.path))) return null;
    const children = await this.childrenOf(cat, f.path);
    if (children.length !== 1) return null;
    const child = children[0]!;
    const vm = this.host.vm();
    const disk = vm?.state === 'Shutdown' ? undefined : vm?.platform.disks.find((d) => layersOf(d.backend).map(pathOf).includes(f.path));
    // Our own read lock goes first; a write lock then proves no other process (a clone) reads it.
    await disk?.releaseBackingLock(f.path);
    let guard;
    try {
      guard = await lockedHandle(f.path, 'write');
    } catch {
      if (disk !== undefined) await disk.holdBackingLock(f.path, await lockedHandle(f.path, 'read'));
      return null;
    }
    try {
      await dropLayer(child, f.path, disk?.backend ?? null);
    } finally {
      await guard.close();
    }
    const below = await readBackingOf(child);
    const refreshed = await Promise.all(cat.entries.map(async (e) => e.disks.some((d) => d.path === child)
      ? { name: e.name, identity: await diskIdentity(child) } : null));
    await cat.update((doc) => {
      doc.overlays = doc.overlays.filter((o) => o.path !== f.path);
      for (const o of doc.overlays) if (o.path === child && below !== null) o.backing = resolve(below);
      for (const r of refreshed) {
        if (r === null) continue;
        for (const d of doc.snapshots.find((s) => s.name === r.name)!.disks) if (d.path === child) d.identity = r.identity;
      }
    });
    await rm(f.path, { force: true });
    return child;
  }

  /** Every image a named snapshot in the VM's default catalogue froze (commit must not write them). */
  async protectedImages(): Promise<Set<string>> {
    let cat: Catalogue;
    try {
      cat = await Catalogue.load(this.catalogueDir(undefined));
    } catch {
      return new Set();
    }
    return new Set(cat.entries.flatMap((e) => e.disks.map((d) => d.path)));
  }

  // ---- restore of checkpoints ------------------------------------------------------------------

  /** When `dir` is a checkpoint with disks, restores it onto new overlays; else returns null. */
  async restoreIfCheckpoint(req: Parameters<typeof restoreCheckpoint>[0]): Promise<Vm | null> {
    const disks = await readCheckpointDisks(snapshotUrlToPath(req.source_url));
    if (disks === null) return null;
    const r = await restoreCheckpoint(req, disks, (c) => this.host.hooksFor(c));
    this.record('checkpoint-restored', { overlays: r.overlays });
    return r.vm;
  }
}

/** The first `nameFor(n)`, n = 1, 2, ..., that names no existing file. */
async function freeName(nameFor: (n: number) => string): Promise<string> {
  for (let n = 1; ; n++) {
    const p = nameFor(n);
    if (!(await exists(p))) return p;
  }
}

function fileBytes(path: string): number {
  try {
    return statSync(path).blocks * 512;
  } catch {
    return 0;
  }
}

function dirBytes(dir: string): number {
  try {
    return readdirSync(dir).reduce((n, name) => n + fileBytes(join(dir, name)), 0);
  } catch {
    return 0;
  }
}
