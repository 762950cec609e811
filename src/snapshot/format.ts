import { createHash } from 'node:crypto';
import { ramLayout } from '../memory/layout.js';
import { SnapshotError } from './errors.js';
import { canonicalJson, type JsonObject, type JsonValue } from './json-codec.js';
import { CHECKSUM_ALGORITHMS, PAGE_SIZE, type RegionChecksum } from './sparse.js';

/**
 * The vm.json schema and its checks. The VM config and the vCPU, VM and device states are the
 * VMM's (it fills and interprets them: the config through a ConfigCodec it passes in); everything
 * the restore path relies on before it touches KVM — version, layout, counts, file names,
 * checksums — is checked here.
 */

export const FORMAT_NAME = 'tsvmm-snapshot';
export const VM_JSON = 'vm.json';

/**
 * major.minor. A reader accepts its own major with a minor up to its own: minor bumps add
 * fields an older writer never produced, so an older minor reads fine, while a newer minor may
 * carry state this reader would silently drop. A different major is refused outright.
 */
export interface FormatVersion {
  major: number;
  minor: number;
}
export const FORMAT_VERSION: FormatVersion = { major: 1, minor: 0 };

export function formatVersionString(v: FormatVersion = FORMAT_VERSION): string {
  return `${v.major}.${v.minor}`;
}

export function memoryRegionFileName(index: number): string {
  return `memory-region-${index}`;
}

export interface MemoryRegionEntry {
  index: number;
  guest_base: number;
  size: number;
  file: string;
  checksum: RegionChecksum;
  /** Bytes of non-zero pages written (the rest of the file is holes). */
  data_bytes: number;
}

export interface DeviceEntry {
  type: string;
  state: JsonValue;
}

export interface DiskEntry {
  id: string;
  path: string;
  /** What identifies the image the memory was taken against (size, mtime, inode, …). */
  identity: JsonObject;
}

/**
 * What this layer checks the rest of vm.json against, taken from the VM config. `field` is where
 * the config holds the value (a path inside `config`, named in errors).
 */
export interface ConfigFacts {
  memory: { field: string; size: number };
  vcpus: { field: string; count: number };
  disks: { field: string; ids: readonly string[] };
}

/**
 * The VMM's side of the stored config: the snapshot layer does not know its shape, so the VMM
 * parses it (with the same code its API uses) and tells the facts the layout is checked against.
 */
export interface ConfigCodec<C> {
  /**
   * The config as the VMM will run it; throws on anything it would not run. `fail` reports a
   * field path inside the config ('' for the config itself) that is not what was `expected` as
   * a SnapshotError naming vm.json; any other error thrown is wrapped into one.
   */
  parse(value: unknown, fail: (field: string, expected: string, got: unknown) => never): C;
  facts(config: C): ConfigFacts;
}

export interface SnapshotDocument<C> {
  format: typeof FORMAT_NAME;
  version: string;
  created: string;
  config: C;
  memory: { regions: MemoryRegionEntry[] };
  vcpus: JsonObject[];
  vm: JsonObject;
  devices: Record<string, DeviceEntry>;
  disks: DiskEntry[];
  /** sha256 hex over canonicalJson(document without this field). */
  checksum: string;
}

export function documentChecksum(doc: Record<string, unknown>): string {
  const { checksum: _omitted, ...rest } = doc;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

/** Refuses versions this reader cannot load, with a message that says what to do. */
export function checkFormatVersion(version: unknown, current: FormatVersion = FORMAT_VERSION, file = VM_JSON): FormatVersion {
  const m = typeof version === 'string' ? /^(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})$/.exec(version) : null;
  if (m === null) {
    throw new SnapshotError(`${file}: version must be a "major.minor" string, got ${JSON.stringify(version) ?? 'nothing'}`, { file });
  }
  const v = { major: Number(m[1]), minor: Number(m[2]) };
  const text = formatVersionString(v);
  if (v.major > current.major || (v.major === current.major && v.minor > current.minor)) {
    const understands = v.major > current.major ? `${current.major}.x` : `up to ${formatVersionString(current)}`;
    throw new SnapshotError(`${file}: snapshot format ${text} is newer than this tsvmm understands (${understands}); upgrade tsvmm`, {
      file, version: text,
    });
  }
  if (v.major < current.major) {
    throw new SnapshotError(`${file}: snapshot format ${text} is older than this tsvmm supports (${current.major}.x); restore it with the tsvmm release that wrote it`, {
      file, version: text,
    });
  }
  return v;
}

/** Hand-written validator: each failure names the field path, e.g. `memory.regions[1].size`. */
class Checker {
  constructor(private readonly file: string) {}

  fail(path: string, problem: string): never {
    throw new SnapshotError(`${this.file}: ${path} ${problem}`, { file: this.file, field: path });
  }

  object(v: unknown, path: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, `must be an object, got ${kind(v)}`);
    return v as Record<string, unknown>;
  }

  array(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, `must be an array, got ${kind(v)}`);
    return v;
  }

  string(v: unknown, path: string): string {
    if (typeof v !== 'string' || v.length === 0) this.fail(path, `must be a non-empty string, got ${kind(v)}`);
    return v;
  }

  int(v: unknown, path: string, min: number): number {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) this.fail(path, `must be an integer >= ${min}, got ${JSON.stringify(v) ?? kind(v)}`);
    return v;
  }

  pageMultiple(v: unknown, path: string, min: number): number {
    const n = this.int(v, path, min);
    if (n % PAGE_SIZE !== 0) this.fail(path, `must be a multiple of ${PAGE_SIZE}, got ${n}`);
    return n;
  }
}

function kind(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

export interface ValidateOptions<C> {
  /** Device types the restoring VMM can rebuild; null skips the check (the writer's own check). */
  knownDeviceTypes: ReadonlySet<string> | null;
  configCodec: ConfigCodec<C>;
  file?: string;
}

function validateConfig<C>(c: Checker, v: unknown, codec: ConfigCodec<C>): C {
  const fail = (field: string, expected: string, got: unknown): never =>
    c.fail(field === '' ? 'config' : `config.${field}`, `must be ${expected}, got ${kind(got)}`);
  try {
    return codec.parse(v, fail);
  } catch (e) {
    if (e instanceof SnapshotError) throw e;
    return c.fail('config', `is refused: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function validateRegions(c: Checker, v: unknown, memory: ConfigFacts['memory']): MemoryRegionEntry[] {
  const regions = c.array(c.object(v, 'memory').regions, 'memory.regions').map((r, i) => {
    const p = `memory.regions[${i}]`;
    const region = c.object(r, p);
    const index = c.int(region.index, `${p}.index`, 0);
    if (index !== i) c.fail(`${p}.index`, `must be ${i} (regions are listed in index order), got ${index}`);
    c.int(region.guest_base, `${p}.guest_base`, 0);
    const size = c.pageMultiple(region.size, `${p}.size`, PAGE_SIZE);
    // The file name is fixed by the index: a name from vm.json is never used as a path, so a
    // damaged or hostile vm.json cannot point the restorer at another file.
    if (region.file !== memoryRegionFileName(i)) c.fail(`${p}.file`, `must be "${memoryRegionFileName(i)}", got ${JSON.stringify(region.file) ?? 'nothing'}`);
    const sum = c.object(region.checksum, `${p}.checksum`);
    if (!(CHECKSUM_ALGORITHMS as readonly unknown[]).includes(sum.algorithm)) {
      c.fail(`${p}.checksum.algorithm`, `must be one of ${CHECKSUM_ALGORITHMS.join(', ')}, got ${JSON.stringify(sum.algorithm) ?? 'nothing'}`);
    }
    const hexLength = sum.algorithm === 'sha256-pages-v1' ? 64 : 8;
    if (typeof sum.value !== 'string' || !new RegExp(`^[0-9a-f]{${hexLength}}$`).test(sum.value)) {
      c.fail(`${p}.checksum.value`, `must be ${hexLength} lowercase hex digits`);
    }
    const data = c.pageMultiple(region.data_bytes, `${p}.data_bytes`, 0);
    if (data > size) c.fail(`${p}.data_bytes`, `(${data}) exceeds the region size (${size})`);
    return region as unknown as MemoryRegionEntry;
  });
  const expected = ramLayout(memory.size);
  const describe = (rs: ReadonlyArray<{ guestBase: number; size: number }>): string =>
    rs.map((r) => `0x${r.guestBase.toString(16)}+0x${r.size.toString(16)}`).join(', ');
  const actual = regions.map((r) => ({ guestBase: r.guest_base, size: r.size }));
  if (actual.length !== expected.length || actual.some((r, i) => r.guestBase !== expected[i]!.guestBase || r.size !== expected[i]!.size)) {
    c.fail('memory.regions', `(${describe(actual)}) do not match the layout of config.${memory.field} ${memory.size} (${describe(expected)})`);
  }
  return regions;
}

/**
 * Checks every field the restore path relies on and returns the document typed, its config as
 * the codec parsed it. Cross-checks against the config's facts: regions = ramLayout(memory size);
 * one vCPU state per boot vCPU; device types known to the restorer; one disk entry per config
 * disk, same ids.
 */
export function validateDocument<C>(raw: unknown, options: ValidateOptions<C>): SnapshotDocument<C> {
  const file = options.file ?? VM_JSON;
  const c = new Checker(file);
  const doc = c.object(raw, '(top level)');
  if (doc.format !== FORMAT_NAME) c.fail('format', `must be "${FORMAT_NAME}", got ${JSON.stringify(doc.format) ?? 'nothing'}`);
  checkFormatVersion(doc.version, FORMAT_VERSION, file);
  const created = c.string(doc.created, 'created');
  if (Number.isNaN(Date.parse(created))) c.fail('created', `is not an ISO date: ${JSON.stringify(created)}`);
  const config = validateConfig(c, doc.config, options.configCodec);
  const facts = options.configCodec.facts(config);
  validateRegions(c, doc.memory, facts.memory);

  const vcpus = c.array(doc.vcpus, 'vcpus');
  vcpus.forEach((s, i) => c.object(s, `vcpus[${i}]`));
  if (vcpus.length !== facts.vcpus.count) {
    c.fail('vcpus', `holds ${vcpus.length} vCPU states but config.${facts.vcpus.field} is ${facts.vcpus.count}`);
  }
  c.object(doc.vm, 'vm');

  const devices = c.object(doc.devices, 'devices');
  for (const [id, d] of Object.entries(devices)) {
    const dev = c.object(d, `devices.${id}`);
    const type = c.string(dev.type, `devices.${id}.type`);
    if (options.knownDeviceTypes !== null && !options.knownDeviceTypes.has(type)) {
      c.fail(`devices.${id}.type`, `"${type}" is not a device type this tsvmm can restore (known: ${[...options.knownDeviceTypes].sort().join(', ')})`);
    }
    if (!('state' in dev) || dev.state === undefined) c.fail(`devices.${id}.state`, 'is missing');
  }

  const ids = new Set<string>();
  c.array(doc.disks, 'disks').forEach((d, i) => {
    const disk = c.object(d, `disks[${i}]`);
    const id = c.string(disk.id, `disks[${i}].id`);
    if (ids.has(id)) c.fail(`disks[${i}].id`, `"${id}" appears twice`);
    ids.add(id);
    c.string(disk.path, `disks[${i}].path`);
    c.object(disk.identity, `disks[${i}].identity`);
  });
  const configIds = facts.disks.ids;
  if (configIds.length !== ids.size || configIds.some((id) => !ids.has(id))) {
    c.fail('disks', `(${[...ids].join(', ') || 'none'}) do not match config.${facts.disks.field} (${configIds.join(', ') || 'none'})`);
  }
  if (typeof doc.checksum !== 'string' || !/^[0-9a-f]{64}$/.test(doc.checksum)) c.fail('checksum', 'must be 64 lowercase hex digits');
  return { ...doc, config } as unknown as SnapshotDocument<C>;
}
