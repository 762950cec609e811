import { ConfigError } from '../../errors.js';
import { SnapshotError } from '../../snapshot/errors.js';
import { snapshotUrlToPath } from '../../snapshot/url.js';
import { CH_TOP_LEVEL_SECTIONS, DEFAULT_RNG, defaultDiskId, resolvePorts, type RngConfig, type DiskConfig, type PortConfig, type PortMode, type VmConfig } from '../config.js';
import { acceptedTopLevelSections, checkUnsupportedFields } from './ch-sections.js';
import type { MemoryRestoreMode, ResizeDiskRequest, RestoreRequest, SnapshotRequest } from '../requests.js';

/**
 * Hand-written, strict validation of API bodies (and of the same JSON given to the CLI). Every
 * error names the field by its dotted path and says what was expected, so a person can fix the
 * body without reading code. Unknown fields are errors: a misspelt `boot_vcpu` silently ignored
 * would boot a VM the user did not ask for. Independent of HTTP on purpose.
 */

type Json = Record<string, unknown>;

const MAX_VCPUS = 254; // Cloud Hypervisor's limit (8-bit APIC IDs minus broadcast)
const PAGE = 4096;
const MIN_MEMORY = 1 << 20;
const MAX_MEMORY = 2 ** 46; // 64 TiB: beyond any host this runs on, and well inside 2^53
export const DEFAULT_MEMORY_SIZE = 512 * 1024 * 1024; // Cloud Hypervisor's default
const PORT_MODES: readonly PortMode[] = ['Tty', 'Pty', 'File', 'Off', 'Null', 'Socket'];
const DISK_FORMATS = ['raw', 'qcow2'];
const IMAGE_TYPES: Record<string, string> = { Raw: 'raw', Qcow2: 'qcow2' };
/** Cloud Hypervisor's DiskConfig fields beyond tsvmm's (checked by ch-sections.ts). */
const CH_DISK_FIELDS = [
  'direct', 'iommu', 'num_queues', 'queue_size', 'vhost_user', 'vhost_socket', 'rate_limit_group', 'rate_limiter_config',
  'disable_io_uring', 'disable_aio', 'pci_segment', 'queue_affinity', 'image_type', 'backing_files', 'sparse',
];
const VIRTIO_BLK_ID_BYTES = 20;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number' && !Number.isInteger(value)) return `the number ${value}`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}

function fail(field: string, expected: string, value: unknown): never {
  throw new ConfigError(`${field}: expected ${expected}, got ${describe(value)}`, { field });
}

function object(value: unknown, field: string, allowed: readonly string[]): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(field === '' ? 'body' : field, 'a JSON object', value);
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      const where = field === '' ? key : `${field}.${key}`;
      throw new ConfigError(`unknown field "${where}" (allowed here: ${allowed.join(', ')})`, { field: where });
    }
  }
  return value as Json;
}

function integer(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) fail(field, 'an integer', value);
  if (value < min || value > max) {
    throw new ConfigError(`${field}: ${value} is out of range (${min}..${max})`, { field });
  }
  return value;
}

function boolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') fail(field, 'a boolean (true or false)', value);
  return value;
}

function string(value: unknown, field: string): string {
  if (typeof value !== 'string') fail(field, 'a string', value);
  return value;
}

/** A file-system path: non-empty and free of NUL bytes (which would truncate it at the syscall). */
function path(value: unknown, field: string): string {
  const s = string(value, field);
  if (s.length === 0) throw new ConfigError(`${field}: must not be empty`, { field });
  if (s.includes('\0')) throw new ConfigError(`${field}: must not contain NUL bytes`, { field });
  return s;
}

function parseCpus(value: unknown): VmConfig['cpus'] {
  if (value === undefined) return { boot_vcpus: 1, max_vcpus: 1 };
  const o = object(value, 'cpus', ['boot_vcpus', 'max_vcpus', 'topology', 'kvm_hyperv', 'max_phys_bits', 'affinity', 'features', 'nested']);
  checkUnsupportedFields(o, 'cpus', ['boot_vcpus', 'max_vcpus']);
  const boot = o.boot_vcpus === undefined ? 1 : integer(o.boot_vcpus, 'cpus.boot_vcpus', 1, MAX_VCPUS);
  const max = o.max_vcpus === undefined ? boot : integer(o.max_vcpus, 'cpus.max_vcpus', 1, MAX_VCPUS);
  if (max < boot) {
    throw new ConfigError(`cpus.max_vcpus (${max}) must be at least cpus.boot_vcpus (${boot})`, { field: 'cpus.max_vcpus' });
  }
  return { boot_vcpus: boot, max_vcpus: max };
}

function parseMemory(value: unknown): VmConfig['memory'] {
  if (value === undefined) return { size: DEFAULT_MEMORY_SIZE };
  const o = object(value, 'memory', [
    'size', 'mergeable', 'hotplug_method', 'hotplug_size', 'hotplugged_size', 'shared', 'hugepages', 'hugepage_size', 'prefault', 'zones', 'thp',
  ]);
  checkUnsupportedFields(o, 'memory', ['size']);
  if (o.size === undefined) throw new ConfigError('memory.size: required (bytes)', { field: 'memory.size' });
  const size = integer(o.size, 'memory.size', MIN_MEMORY, MAX_MEMORY);
  if (size % PAGE !== 0) {
    throw new ConfigError(`memory.size: ${size} is not a multiple of the 4096-byte page size`, { field: 'memory.size' });
  }
  return { size };
}

/** The `payload` form, or the older top-level `kernel: {path}`, `initramfs: {path}`, `cmdline: {args}`. */
function parsePayload(o: Json): VmConfig['payload'] {
  const legacy = o.kernel !== undefined || o.initramfs !== undefined || o.cmdline !== undefined;
  if (o.payload !== undefined && legacy) {
    throw new ConfigError('give either "payload" or the older "kernel"/"initramfs"/"cmdline" fields, not both', { field: 'payload' });
  }
  let kernel: unknown;
  let initramfs: unknown;
  let cmdline: unknown;
  let kernelField = 'payload.kernel';
  let initramfsField = 'payload.initramfs';
  let cmdlineField = 'payload.cmdline';
  if (legacy) {
    kernelField = 'kernel.path';
    initramfsField = 'initramfs.path';
    cmdlineField = 'cmdline.args';
    if (o.kernel !== undefined) kernel = object(o.kernel, 'kernel', ['path']).path;
    if (o.initramfs !== undefined) initramfs = object(o.initramfs, 'initramfs', ['path']).path;
    if (o.cmdline !== undefined) cmdline = object(o.cmdline, 'cmdline', ['args']).args;
  } else {
    if (o.payload === undefined) throw new ConfigError('payload: required ({"kernel": "/path/to/vmlinux"})', { field: 'payload' });
    const p = object(o.payload, 'payload', ['kernel', 'initramfs', 'cmdline', 'firmware', 'igvm', 'host_data']);
    checkUnsupportedFields(p, 'payload', ['kernel', 'initramfs', 'cmdline']);
    ({ kernel, initramfs, cmdline } = p);
  }
  if (kernel === undefined) throw new ConfigError(`${kernelField}: required (path of the guest kernel)`, { field: kernelField });
  const kernelPath = path(kernel, kernelField);
  // Cloud Hypervisor writes an absent optional field as null.
  const initramfsPath = initramfs === undefined || initramfs === null ? undefined : path(initramfs, initramfsField);
  const args = cmdline === undefined || cmdline === null ? undefined : string(cmdline, cmdlineField);
  if (args?.includes('\0') === true) throw new ConfigError(`${cmdlineField}: must not contain NUL bytes`, { field: cmdlineField });
  return {
    kernel: kernelPath,
    ...(initramfsPath === undefined ? {} : { initramfs: initramfsPath }),
    ...(args === undefined ? {} : { cmdline: args }),
  };
}

function parseDisk(value: unknown, index: number, rules: VmConfigRules): DiskConfig {
  const field = `disks[${index}]`;
  const o = object(value, field, [
    'path', 'readonly', 'id', 'serial', 'format', ...CH_DISK_FIELDS,
  ]);
  checkUnsupportedFields(o, field, ['path', 'readonly', 'id', 'serial', 'format', 'image_type', 'backing_files']);
  if (o.path === undefined) throw new ConfigError(`${field}.path: required`, { field: `${field}.path` });
  const diskPath = path(o.path, `${field}.path`);
  const readonly = o.readonly === undefined ? false : boolean(o.readonly, `${field}.readonly`);
  const id = o.id === undefined || o.id === null ? defaultDiskId(index) : string(o.id, `${field}.id`);
  if (rules.cliDiskIds === true ? id === '' : !/^[A-Za-z0-9_.-]{1,64}$/.test(id)) {
    throw new ConfigError(`${field}.id: "${id}" must be 1-64 characters of A-Z a-z 0-9 _ . -`, { field: `${field}.id` });
  }
  const serial = o.serial === undefined || o.serial === null ? undefined : string(o.serial, `${field}.serial`);
  if (serial !== undefined && Buffer.byteLength(serial) > VIRTIO_BLK_ID_BYTES) {
    throw new ConfigError(`${field}.serial: at most ${VIRTIO_BLK_ID_BYTES} bytes (virtio-blk ID limit)`, { field: `${field}.serial` });
  }
  if (o.format !== undefined && o.image_type !== undefined && o.image_type !== 'Unknown') {
    throw new ConfigError(`${field}: give image_type or format, not both`, { field: `${field}.image_type` });
  }
  // Cloud Hypervisor's image_type (Raw, Qcow2; Unknown means detect) or tsvmm's format (raw, qcow2).
  const imageType = o.image_type === undefined || o.image_type === 'Unknown' ? undefined : IMAGE_TYPES[string(o.image_type, `${field}.image_type`)];
  if (o.image_type !== undefined && o.image_type !== 'Unknown' && imageType === undefined) fail(`${field}.image_type`, 'Raw, Qcow2 or Unknown (tsvmm reads no other image type yet)', o.image_type);
  const backingFiles = o.backing_files === undefined || o.backing_files === null ? false : boolean(o.backing_files, `${field}.backing_files`);
  const format = o.format === undefined || o.format === null ? imageType : string(o.format, `${field}.format`);
  if (format !== undefined && !DISK_FORMATS.includes(format)) fail(`${field}.format`, `one of ${DISK_FORMATS.join(', ')}`, format);
  return {
    path: diskPath, readonly, id,
    ...(serial === undefined ? {} : { serial }),
    ...(format === undefined ? {} : { format }),
    ...(backingFiles ? { backing_files: true } : {}),
  };
}

function parseDisks(value: unknown, rules: VmConfigRules): DiskConfig[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) fail('disks', 'an array', value);
  const disks = value.map((d, i) => parseDisk(d, i, rules));
  const seen = new Set<string>();
  for (const d of disks) {
    if (seen.has(d.id)) throw new ConfigError(`disks: id "${d.id}" is used by more than one disk`, { field: 'disks' });
    seen.add(d.id);
  }
  return disks;
}

/** A `serial` or `console` section (Cloud Hypervisor's ConsoleConfig). */
function parsePort(value: unknown, name: 'serial' | 'console'): PortConfig {
  const o = object(value, name, ['mode', 'file', 'socket', 'iommu']);
  checkUnsupportedFields(o, name, ['mode', 'file', 'socket']);
  const raw = string(o.mode, `${name}.mode`);
  // Case-insensitive like Cloud Hypervisor's CLI ("tty", "off"); stored in the API's spelling.
  const mode = PORT_MODES.find((m) => m.toLowerCase() === raw.toLowerCase());
  if (mode === undefined) fail(`${name}.mode`, `one of ${PORT_MODES.join(', ')}`, raw);
  if (mode === 'File') {
    if (o.file === undefined || o.file === null) throw new ConfigError(`${name}.file: required when ${name}.mode is File`, { field: `${name}.file` });
    return { mode, file: path(o.file, `${name}.file`) };
  }
  // In Pty mode `file` is the terminal a running VMM opened, as vm.info reports it: a config
  // copied from there is accepted, and the new VM gets a terminal of its own.
  if (o.file !== undefined && o.file !== null && mode !== 'Pty') {
    throw new ConfigError(`${name}.file: only valid when ${name}.mode is File (it is ${mode})`, { field: `${name}.file` });
  }
  if (o.socket !== undefined && o.socket !== null) {
    if (mode !== 'Socket') throw new ConfigError(`${name}.socket: only valid when ${name}.mode is Socket (it is ${mode})`, { field: `${name}.socket` });
    return { mode, socket: path(o.socket, `${name}.socket`) };
  }
  return { mode };
}

/** Cloud Hypervisor's `rng` section: `{src, iommu}`; the default when absent. */
function parseRng(value: unknown): RngConfig {
  if (value === undefined) return DEFAULT_RNG;
  const o = object(value, 'rng', ['src', 'iommu']);
  checkUnsupportedFields(o, 'rng', ['src']);
  return o.src === undefined || o.src === null ? DEFAULT_RNG : { src: path(o.src, 'rng.src') };
}

export interface VmConfigRules {
  /**
   * Accept any non-empty disk id, as `--disk id=` does, not only the API's 1-64 characters of
   * A-Z a-z 0-9 _ . -: a snapshot stores the config of a VM the CLI may have made.
   */
  cliDiskIds?: boolean;
}

/**
 * A `vm.create` body (Cloud Hypervisor field names) → VmConfig with defaults filled in:
 * cpus 1/1, memory 512 MiB, no disks, serial Null, console Tty. Throws ConfigError naming the bad field.
 */
export function parseVmConfigJson(value: unknown, rules: VmConfigRules = {}): VmConfig {
  const o = object(value, '', ['cpus', 'memory', 'payload', 'kernel', 'initramfs', 'cmdline', 'disks', 'serial', 'console', 'rng', ...CH_TOP_LEVEL_SECTIONS]);
  const ports = resolvePorts(
    o.serial === undefined ? undefined : parsePort(o.serial, 'serial'),
    o.console === undefined ? undefined : parsePort(o.console, 'console'),
  );
  return {
    ...acceptedTopLevelSections(o),
    cpus: parseCpus(o.cpus),
    memory: parseMemory(o.memory),
    payload: parsePayload(o),
    disks: parseDisks(o.disks, rules),
    ...ports,
    rng: parseRng(o.rng),
  };
}

/**
 * A `file://` URL naming a local directory, returned as given. The snapshot layer's parser
 * (snapshotUrlToPath) decides, so a body is refused here exactly when the snapshot or restore
 * would refuse its URL; the refusal names the field, as every body error does.
 */
export function parseFileUrl(value: unknown, field: string): string {
  const s = string(value, field);
  try {
    snapshotUrlToPath(s);
  } catch (e) {
    if (e instanceof SnapshotError) throw new ConfigError(`${field}: ${e.message}`, { field });
    throw e;
  }
  return s;
}

export function parseSnapshotRequest(value: unknown): SnapshotRequest {
  const o = object(value, '', ['destination_url', 'disks']);
  if (o.destination_url === undefined) {
    throw new ConfigError('destination_url: required (file:///dir)', { field: 'destination_url' });
  }
  const req: SnapshotRequest = { destination_url: parseFileUrl(o.destination_url, 'destination_url') };
  if (o.disks !== undefined) req.disks = boolean(o.disks, 'disks');
  return req;
}

/** vm.resize-disk: `{"id": "_disk0", "desired_size": 2147483648}` (bytes; the VMM checks it against the disk). */
export function parseResizeDiskRequest(value: unknown): ResizeDiskRequest {
  const o = object(value, '', ['id', 'desired_size']);
  if (o.id === undefined) throw new ConfigError('id: required (the disk\'s id, as vm.info lists it)', { field: 'id' });
  if (o.desired_size === undefined) throw new ConfigError('desired_size: required (the new size in bytes)', { field: 'desired_size' });
  return { id: string(o.id, 'id'), desired_size: integer(o.desired_size, 'desired_size', 1, Number.MAX_SAFE_INTEGER) };
}

/** Cloud Hypervisor's spellings (serde's, then its CLI's lower case). */
const MEMORY_RESTORE_MODES: Record<string, MemoryRestoreMode> = { Copy: 'Copy', OnDemand: 'OnDemand', copy: 'Copy', ondemand: 'OnDemand' };

/** `memory_restore_mode` as Cloud Hypervisor spells it. */
export function memoryRestoreMode(value: unknown, field: string): MemoryRestoreMode {
  const mode = typeof value === 'string' ? MEMORY_RESTORE_MODES[value] : undefined;
  if (mode === undefined) fail(field, '"Copy" or "OnDemand"', value);
  return mode;
}

/**
 * vm.restore as Cloud Hypervisor's RestoreConfig (ch-remote sends every field: `net_fds` is null
 * when no network is handed over) plus tsvmm's `force` and `disk_paths`.
 */
export function parseRestoreRequest(value: unknown): RestoreRequest {
  const o = object(value, '', ['source_url', 'prefault', 'memory_restore_mode', 'resume', 'net_fds', 'force', 'disk_paths', 'backing_files']);
  if (o.source_url === undefined) throw new ConfigError('source_url: required (file:///dir)', { field: 'source_url' });
  const req: RestoreRequest = { source_url: parseFileUrl(o.source_url, 'source_url') };
  if (o.prefault !== undefined) req.prefault = boolean(o.prefault, 'prefault');
  if (o.memory_restore_mode !== undefined) req.memory_restore_mode = memoryRestoreMode(o.memory_restore_mode, 'memory_restore_mode');
  if (o.resume !== undefined) req.resume = boolean(o.resume, 'resume');
  if (o.net_fds !== undefined && o.net_fds !== null) {
    if (!Array.isArray(o.net_fds)) fail('net_fds', 'null or a list', o.net_fds);
    if (o.net_fds.length > 0) throw new ConfigError('net_fds: tsvmm has no network devices yet, so there is no interface to hand file descriptors to', { field: 'net_fds' });
  }
  if (o.force !== undefined) req.force = boolean(o.force, 'force');
  if (o.disk_paths !== undefined) {
    const paths = o.disk_paths;
    if (typeof paths !== 'object' || paths === null || Array.isArray(paths)) fail('disk_paths', 'a JSON object of disk id to path', paths);
    req.disk_paths = {};
    for (const [id, path] of Object.entries(paths as Json)) req.disk_paths[id] = string(path, `disk_paths.${id}`);
  }
  if (o.backing_files !== undefined) req.backing_files = boolean(o.backing_files, 'backing_files');
  return req;
}
