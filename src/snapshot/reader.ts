import { readFile, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { SnapshotError } from './errors.js';
import { FORMAT_NAME, VM_JSON, checkFormatVersion, documentChecksum, validateDocument, type ConfigCodec, type SnapshotDocument } from './format.js';
import { findLeftovers } from './leftovers.js';
import { verifyRegionFile } from './sparse.js';

/**
 * Reads and verifies a snapshot directory before anything is restored from it: vm.json parses,
 * names this format, has a version this reader understands, matches its checksum and passes the
 * schema and cross-checks; then every memory file has exactly its declared size and page digest.
 * Nothing is written, so read-only snapshot directories work.
 *
 * Memory verification reads only the extents SEEK_DATA reports and hashes only non-zero pages,
 * so its cost follows the data in the snapshot, not the RAM size (numbers in the report and in
 * bench/snapshot-format-bench.mjs). It is done up front rather than lazily: the restorer maps the
 * files MAP_PRIVATE and the kernel faults pages in without asking us, so there is no later point
 * at which a per-page check could run.
 */

/** vm.json is small (states of a few KiB per vCPU); anything far larger is not ours. */
const MAX_VM_JSON_BYTES = 64 * 1024 * 1024;

export interface ReadSnapshotOptions<C> {
  /** Device types the restoring VMM can rebuild; any other type in vm.json is refused. */
  knownDeviceTypes: Iterable<string>;
  /** How the restoring VMM parses and checks the stored config. */
  configCodec: ConfigCodec<C>;
  /**
   * Keep each verified memory file open and return its handle (VerifiedRegion.file), so the
   * restorer maps exactly the bytes that were checked even if the directory is replaced or
   * renamed meanwhile. The caller closes the handles (after mmap, the mapping keeps the file).
   */
  keepFilesOpen?: boolean;
}

export interface VerifiedRegion {
  index: number;
  guestBase: number;
  size: number;
  /** Absolute path of the verified memory file, for mmap(MAP_PRIVATE). */
  path: string;
  dataBytes: number;
  /** [offset, length] ranges holding data, e.g. to prefault only those. */
  dataExtents: Array<[number, number]>;
  /** Open handle on the verified file (only with keepFilesOpen); `file.fd` is what to mmap. */
  file?: FileHandle;
}

export interface VerifiedSnapshot<C> {
  dir: string;
  document: SnapshotDocument<C>;
  regions: VerifiedRegion[];
}

async function checkDirectory(dir: string): Promise<void> {
  let isDir: boolean;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new SnapshotError(`snapshot directory ${dir} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file: dir });
    }
    const leftovers = await findLeftovers(dir);
    const old = leftovers.filter((l) => l.kind === 'old').pop();
    const hint = old !== undefined
      ? `; ${old.path} holds the previous snapshot from an interrupted replace — rename it to ${dir} (or call recoverSnapshotDir) to use it`
      : leftovers.length > 0
        ? `; ${leftovers.map((l) => l.path).join(', ')} ${leftovers.length === 1 ? 'is' : 'are'} left from an interrupted write that never completed`
        : '';
    throw new SnapshotError(`snapshot directory ${dir} does not exist${hint}`, { file: dir, leftovers: leftovers.map((l) => l.path) });
  }
  if (!isDir) throw new SnapshotError(`snapshot path ${dir} is not a directory`, { file: dir });
}

async function readVmJson(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new SnapshotError(`${file} is not a regular file`, { file });
    if (st.size > MAX_VM_JSON_BYTES) throw new SnapshotError(`${file} is ${st.size} bytes, over the ${MAX_VM_JSON_BYTES}-byte limit; it is not a tsvmm vm.json`, { file });
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof SnapshotError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const problem = code === 'ENOENT' ? 'is missing: this is not a complete snapshot directory' : `cannot be read (${code ?? String(e)})`;
    throw new SnapshotError(`${file} ${problem}`, { file });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new SnapshotError(`${file} is not valid JSON (${(e as Error).message})`, { file });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SnapshotError(`${file} must hold a JSON object`, { file });
  }
  return parsed as Record<string, unknown>;
}

export async function readSnapshot<C>(dirArg: string, options: ReadSnapshotOptions<C>): Promise<VerifiedSnapshot<C>> {
  const dir = resolve(dirArg);
  await checkDirectory(dir);
  const file = join(dir, VM_JSON);
  const raw = await readVmJson(file);
  // Format and version first: a newer major may checksum differently, and "upgrade tsvmm" is
  // the useful message for it, not "checksum mismatch".
  if (raw.format !== FORMAT_NAME) {
    throw new SnapshotError(`${file}: format must be "${FORMAT_NAME}", got ${JSON.stringify(raw.format) ?? 'nothing'}; this is not a tsvmm snapshot`, { file, field: 'format' });
  }
  checkFormatVersion(raw.version, undefined, file);
  const actual = documentChecksum(raw);
  if (raw.checksum !== actual) {
    throw new SnapshotError(`${file} is corrupt or was edited: its checksum ${JSON.stringify(raw.checksum) ?? 'is missing'}, the content hashes to ${actual}`, {
      file, field: 'checksum', expected: raw.checksum, actual,
    });
  }
  const document = validateDocument(raw, { knownDeviceTypes: new Set(options.knownDeviceTypes), configCodec: options.configCodec, file });
  const regions: VerifiedRegion[] = [];
  try {
    for (const r of document.memory.regions) {
      const path = join(dir, r.file);
      const v = await verifyRegionFile(path, r.size, r.checksum, path, options.keepFilesOpen === true);
      const region: VerifiedRegion = { index: r.index, guestBase: r.guest_base, size: r.size, path, dataBytes: v.dataBytes, dataExtents: v.dataExtents };
      if (v.file !== undefined) region.file = v.file;
      regions.push(region);
      if (v.dataBytes !== r.data_bytes) {
        // Unreachable unless the checksum collided; kept because it is free and names the file.
        throw new SnapshotError(`${path} holds ${v.dataBytes} bytes of data, vm.json declares ${r.data_bytes}`, { file: path });
      }
    }
  } catch (e) {
    await Promise.all(regions.map((r) => r.file?.close()));
    throw e;
  }
  return { dir, document, regions };
}
