import { mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { SnapshotError } from './errors.js';
import {
  FORMAT_NAME, VM_JSON, documentChecksum, formatVersionString, memoryRegionFileName, validateDocument,
  type ConfigCodec, type DeviceEntry, type DiskEntry, type MemoryRegionEntry, type SnapshotDocument,
} from './format.js';
import { assertJsonValue, type JsonObject } from './json-codec.js';
import { syncDirectory } from '../util/fs.js';
import { isProcessAlive, recoverSnapshotDir, siblingPath } from './leftovers.js';
import { DEFAULT_CHECKSUM_ALGORITHM, writeRegionFile, type ChecksumAlgorithm } from './sparse.js';

/**
 * Atomic snapshot writes. The new snapshot is built in `<dir>.tmp-<pid>-<hex>` next to `dir`
 * (same filesystem, so renames are atomic), every file and the directory fsync'd, then swapped
 * in. Steps, and what a crash (process or power) right before each one leaves behind:
 *
 *   create-temp, write-memory, write-vm-json, sync-temp-dir
 *       `dir` untouched (the old snapshot, or nothing); an uncommitted `.tmp-*` that
 *       recoverSnapshotDir or the next write removes.
 *   move-old-aside (only when `dir` exists)
 *       same as above: the temp directory is complete but not committed.
 *   move-new-in
 *       `dir` is missing; the old snapshot is complete in `<dir>.old-*`. readSnapshot says so;
 *       recoverSnapshotDir renames it back (the new one was never committed).
 *   sync-parent
 *       the new snapshot is in place. After a power loss the two renames may not both have
 *       reached the disk; ext4/xfs journal them in order, so the disk shows the old snapshot in
 *       place, or the window above, or the new one in place — each readable or recoverable.
 *   remove-old
 *       committed and durable; `<dir>.old-*` (possibly half-deleted) is removed by
 *       recoverSnapshotDir or the next write. readSnapshot ignores it while `dir` exists.
 *
 * The commit point is `move-new-in`. One writer per destination at a time (the VMM serialises
 * snapshots); leftovers of another live process are never touched.
 */

export const WRITE_STEPS = [
  'create-temp', 'write-memory', 'write-vm-json', 'sync-temp-dir',
  'move-old-aside', 'move-new-in', 'sync-parent', 'remove-old',
] as const;
export type WriteStep = (typeof WRITE_STEPS)[number];

/**
 * Thrown by a test hook to stand for a crash: the writer stops where it is and cleans nothing,
 * exactly as if the process had died. Any other error from a hook is handled like an I/O error.
 */
export class SimulatedCrash extends Error {
  constructor(readonly step: WriteStep) {
    super(`simulated crash before ${step}`);
  }
}

/** One RAM region as the VMM holds it. */
export interface MemorySource {
  guestBase: number;
  size: number;
  /** A live view of guest RAM (never copied); the VM must stay paused while writing. */
  bytes: Uint8Array;
  /**
   * Where the backing memfd holds data ([offset, length], from SEEK_DATA/SEEK_HOLE). Only these
   * are scanned; without it the whole region is scanned for non-zero pages. Reading memfd holes
   * through a mapping allocates pages, so pass it when you can.
   */
  dataExtents?: ReadonlyArray<readonly [number, number]>;
}

/** Everything a snapshot records but its memory. */
export interface SnapshotContent<C> {
  config: C;
  /** How the VMM checks `config` (the reader checks it with the same codec). */
  configCodec: ConfigCodec<C>;
  vcpus: JsonObject[];
  vm: JsonObject;
  devices: Record<string, DeviceEntry>;
  disks: DiskEntry[];
}

export interface SnapshotInput<C> extends SnapshotContent<C> {
  memory: MemorySource[];
}

export interface WriteSnapshotOptions {
  checksumAlgorithm?: ChecksumAlgorithm;
  /** Called before each step; for fault-injection tests. */
  beforeStep?: (step: WriteStep) => void | Promise<void>;
  /** Creation time recorded in vm.json (default: now). */
  created?: Date;
}

export interface WriteSnapshotResult<C> {
  dir: string;
  document: SnapshotDocument<C>;
  /** Per region: bytes written (non-zero pages) and bytes the file occupies on disk. */
  regions: Array<{ index: number; dataBytes: number; allocatedBytes: number }>;
  /** True when an existing snapshot was replaced. */
  replaced: boolean;
}

/** True when `dir` exists and may be replaced: a snapshot directory, or an empty directory. */
async function existingSnapshot(dir: string): Promise<boolean> {
  let st;
  try {
    st = await stat(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  if (!st.isDirectory()) throw new SnapshotError(`snapshot destination ${dir} exists and is not a directory; choose another path`, { file: dir });
  const names = await readdir(dir);
  if (names.length > 0 && !names.includes(VM_JSON)) {
    throw new SnapshotError(`snapshot destination ${dir} is a non-empty directory without ${VM_JSON}; refusing to replace it`, { file: dir });
  }
  return true;
}

function checkMemorySources(memory: readonly MemorySource[]): void {
  memory.forEach((m, i) => {
    if (!(m.bytes instanceof Uint8Array) || m.bytes.byteLength !== m.size) {
      throw new RangeError(`memory source ${i}: size ${m.size} but a view of ${m.bytes?.byteLength} bytes`);
    }
  });
}

function buildDocument<C>(input: SnapshotContent<C>, regions: MemoryRegionEntry[], created: Date): SnapshotDocument<C> {
  const draft = {
    format: FORMAT_NAME,
    version: formatVersionString(),
    created: created.toISOString(),
    config: input.config,
    memory: { regions },
    vcpus: input.vcpus,
    vm: input.vm,
    devices: input.devices,
    disks: input.disks,
  };
  const asData: unknown = draft;
  assertJsonValue(asData, 'snapshot');
  return { ...draft, checksum: documentChecksum(draft) } as SnapshotDocument<C>;
}

/** The vm.json entry of memory region `index` (its checksum and data size as written). */
export function regionEntry(index: number, guestBase: number, size: number, written: { checksum: MemoryRegionEntry['checksum']; dataBytes: number }): MemoryRegionEntry {
  return { index, guest_base: guestBase, size, file: memoryRegionFileName(index), checksum: written.checksum, data_bytes: written.dataBytes };
}

/**
 * A snapshot being written: its temporary directory next to `dir`, where the memory files go
 * (`regionPath`), then `commit` writes vm.json and swaps it in (the steps above). Whoever opens
 * one either commits it or abandons it. Live snapshots fill the memory files over many passes
 * while the guest runs; writeSnapshot writes them in one go.
 */
export class SnapshotStaging {
  private done = false;

  private constructor(
    readonly dir: string,
    readonly tmp: string,
    private readonly replacing: boolean,
    private readonly options: WriteSnapshotOptions,
  ) {}

  static async open(dirArg: string, options: WriteSnapshotOptions = {}): Promise<SnapshotStaging> {
    const dir = resolve(dirArg);
    await mkdir(dirname(dir), { recursive: true });
    // Leftovers carrying this process's pid come from an earlier failed write in this process:
    // with one writer per destination at a time, nothing of ours is still working on them.
    await recoverSnapshotDir(dir, { isWriterAlive: (pid) => pid !== process.pid && isProcessAlive(pid) });
    const replacing = await existingSnapshot(dir);
    const staging = new SnapshotStaging(dir, siblingPath(dir, 'tmp'), replacing, options);
    await staging.step('create-temp');
    await mkdir(staging.tmp, { mode: 0o755 });
    return staging;
  }

  get algorithm(): ChecksumAlgorithm {
    return this.options.checksumAlgorithm ?? DEFAULT_CHECKSUM_ALGORITHM;
  }

  regionPath(index: number): string {
    return join(this.tmp, memoryRegionFileName(index));
  }

  async step(s: WriteStep): Promise<void> {
    await this.options.beforeStep?.(s);
  }

  /**
   * Writes vm.json (validated first) next to the memory files and commits the snapshot. On an
   * ordinary failure the temporary directory is gone and `dir` is as it was; a SimulatedCrash
   * leaves everything where it stopped, as a real crash would.
   */
  async commit<C>(content: SnapshotContent<C>, regions: MemoryRegionEntry[]): Promise<WriteSnapshotResult<C>> {
    if (this.done) throw new Error('SnapshotStaging: already committed or abandoned');
    this.done = true;
    const { dir, tmp } = this;
    const old = siblingPath(dir, 'old');
    let movedAside = false;
    let committed = false;
    try {
      const document = buildDocument(content, regions, this.options.created ?? new Date());
      validateDocument(document, { knownDeviceTypes: null, configCodec: content.configCodec, file: `${dir}/${VM_JSON} (being written)` });
      const stats: WriteSnapshotResult<C>['regions'] = [];
      for (const r of regions) stats.push({ index: r.index, dataBytes: r.data_bytes, allocatedBytes: (await stat(this.regionPath(r.index))).blocks * 512 });
      await this.step('write-vm-json');
      const fh = await open(join(tmp, VM_JSON), 'wx', 0o644);
      try {
        await writeFile(fh, `${JSON.stringify(document, null, 2)}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await this.step('sync-temp-dir');
      await syncDirectory(tmp);
      if (this.replacing) {
        await this.step('move-old-aside');
        await rename(dir, old);
        movedAside = true;
      }
      await this.step('move-new-in');
      await rename(tmp, dir);
      committed = true;
      await this.step('sync-parent');
      await syncDirectory(dirname(dir));
      if (this.replacing) {
        try {
          await this.step('remove-old');
          await rm(old, { recursive: true, force: true });
        } catch (e) {
          // Committed and durable: a leftover `.old-*` is harmless and removed by the next write.
          if (e instanceof SimulatedCrash) throw e;
        }
      }
      return { dir, document, regions: stats, replaced: this.replacing };
    } catch (e) {
      if (e instanceof SimulatedCrash || committed) throw e;
      // An ordinary failure before the commit point: put things back as they were.
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      if (movedAside) await rename(old, dir).catch(() => undefined);
      throw e;
    }
  }

  /** Removes the temporary directory: `dir` stays as it was. Harmless after a commit. */
  async abandon(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await rm(this.tmp, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * Writes a snapshot of a paused VM to `dir`, replacing a snapshot already there only at the
 * final rename. The document is validated before any byte is written, so the writer never
 * produces something readSnapshot would refuse (device types excepted: the reader decides those).
 */
export async function writeSnapshot<C>(dirArg: string, input: SnapshotInput<C>, options: WriteSnapshotOptions = {}): Promise<WriteSnapshotResult<C>> {
  const dir = resolve(dirArg);
  const algorithm = options.checksumAlgorithm ?? DEFAULT_CHECKSUM_ALGORITHM;
  const created = options.created ?? new Date();
  checkMemorySources(input.memory);
  const placeholder = algorithm === 'sha256-pages-v1' ? '0'.repeat(64) : '0'.repeat(8);
  const draftRegions = input.memory.map((m, index) => regionEntry(index, m.guestBase, m.size, { checksum: { algorithm, value: placeholder }, dataBytes: 0 }));
  validateDocument(buildDocument(input, draftRegions, created), {
    knownDeviceTypes: null, configCodec: input.configCodec, file: `${dir}/${VM_JSON} (being written)`,
  });
  const staging = await SnapshotStaging.open(dir, { ...options, created });
  const regions: MemoryRegionEntry[] = [];
  try {
    await staging.step('write-memory');
    for (const [index, m] of input.memory.entries()) {
      const r = await writeRegionFile(staging.regionPath(index), m.bytes, m.dataExtents, algorithm);
      regions.push(regionEntry(index, m.guestBase, m.size, r));
    }
  } catch (e) {
    if (!(e instanceof SimulatedCrash)) await staging.abandon();
    throw e;
  }
  return staging.commit(input, regions);
}
