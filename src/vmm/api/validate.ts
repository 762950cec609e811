import { ConfigError } from '../../errors.js';
import { CH_TOP_LEVEL_SECTIONS, DEFAULT_RNG, DEFAULT_VSOCK_ID, defaultDiskId, resolvePorts, type ChTopLevelSection, type DiskConfig, type NetConfig, type PortConfig, type RngConfig, type VmConfig, type VsockConfig } from '../config.js';
import { checkNetIds, netConfig } from '../net-config.js';
import type { ResizeDiskRequest, RestoreRequest, SnapshotRequest } from '../requests.js';
import { DEFAULT_MEMORY_SIZE, RestoreConfig, SnapshotVmConfig, VmConfig as VmConfigSchema, VmResizeDiskConfig, VmSnapshotConfig } from './schema/bodies.js';
import type { Static } from './schema/json-schema.js';
import { validateJson } from './schema/validate-json.js';

/**
 * The API's bodies (and the same JSON given to the CLI or stored in a snapshot) → the VMM's
 * requests. The shape is checked by the bodies' schemas (schema/bodies.ts, the same objects
 * docs/openapi.json prints); what follows are the rules a schema cannot say (fields that exclude
 * each other, defaults, bytes rather than characters). Independent of HTTP on purpose.
 */

type VmConfigBody = Static<typeof VmConfigSchema>;
type DiskBody = NonNullable<VmConfigBody['disks']>[number];
type PortBody = NonNullable<VmConfigBody['serial']>;
type NetBody = NonNullable<VmConfigBody['net']>[number];

const VIRTIO_BLK_ID_BYTES = 20;
const IMAGE_TYPES: Record<string, string | undefined> = { Raw: 'raw', Qcow2: 'qcow2', Unknown: undefined };

function cpus(c: VmConfigBody['cpus']): VmConfig['cpus'] {
  const boot = c?.boot_vcpus ?? 1;
  const max = c?.max_vcpus ?? boot;
  if (max < boot) {
    throw new ConfigError(`cpus.max_vcpus (${max}) must be at least cpus.boot_vcpus (${boot})`, { field: 'cpus.max_vcpus' });
  }
  return { boot_vcpus: boot, max_vcpus: max };
}

/** The `payload` form, or the older top-level `kernel: {path}`, `initramfs: {path}`, `cmdline: {args}`. */
function payload(o: VmConfigBody): VmConfig['payload'] {
  const legacy = o.kernel !== undefined || o.initramfs !== undefined || o.cmdline !== undefined;
  if (o.payload !== undefined && legacy) {
    throw new ConfigError('give either "payload" or the older "kernel"/"initramfs"/"cmdline" fields, not both', { field: 'payload' });
  }
  if (legacy) {
    if (o.kernel === undefined) throw new ConfigError('kernel.path: required (path of the guest kernel)', { field: 'kernel.path' });
    return {
      kernel: o.kernel.path,
      ...(o.initramfs === undefined ? {} : { initramfs: o.initramfs.path }),
      ...(o.cmdline === undefined ? {} : { cmdline: o.cmdline.args }),
    };
  }
  if (o.payload === undefined) throw new ConfigError('payload: required (e.g. {"kernel": "/path/to/vmlinux"})', { field: 'payload' });
  const { kernel, initramfs, cmdline } = o.payload;
  return { kernel, ...(initramfs === undefined ? {} : { initramfs }), ...(cmdline === undefined ? {} : { cmdline }) };
}

function disk(d: DiskBody, index: number): DiskConfig {
  const field = `disks[${index}]`;
  if (d.serial !== undefined && Buffer.byteLength(d.serial) > VIRTIO_BLK_ID_BYTES) {
    throw new ConfigError(`${field}.serial: at most ${VIRTIO_BLK_ID_BYTES} bytes (virtio-blk ID limit)`, { field: `${field}.serial` });
  }
  if (d.format !== undefined && d.image_type !== undefined && d.image_type !== 'Unknown') {
    throw new ConfigError(`${field}: give image_type or format, not both`, { field: `${field}.image_type` });
  }
  // tsvmm's format (raw, qcow2) or Cloud Hypervisor's image_type (Raw, Qcow2; Unknown means detect).
  const format = d.format ?? (d.image_type === undefined ? undefined : IMAGE_TYPES[d.image_type]);
  return {
    path: d.path,
    readonly: d.readonly ?? false,
    id: d.id ?? defaultDiskId(index),
    ...(d.serial === undefined ? {} : { serial: d.serial }),
    ...(format === undefined ? {} : { format }),
    ...(d.backing_files === true ? { backing_files: true } : {}),
  };
}

function disks(list: readonly DiskBody[] | undefined): DiskConfig[] {
  const out = (list ?? []).map(disk);
  const seen = new Set<string>();
  for (const d of out) {
    if (seen.has(d.id)) throw new ConfigError(`disks: id "${d.id}" is used by more than one disk`, { field: 'disks' });
    seen.add(d.id);
  }
  return out;
}

/** Cloud Hypervisor's `vsock` section; its id must not be a disk's (both name devices in vm.counters). */
function vsock(v: NonNullable<VmConfigBody['vsock']>, diskList: readonly DiskBody[] | undefined): VsockConfig {
  const id = v.id ?? DEFAULT_VSOCK_ID;
  if ((diskList ?? []).some((d, i) => (d.id ?? defaultDiskId(i)) === id)) throw new ConfigError(`vsock.id: "${id}" is a disk's id`, { field: 'vsock.id' });
  return { cid: v.cid, socket: v.socket, id };
}

/**
 * Cloud Hypervisor's `net` entries (net-config.ts: the rules `--net` follows too), their ids
 * unique among the devices. An inherited `fd` is taken from a snapshot's config only (`storedFds`):
 * the API's schema accepts it null only.
 */
function nets(list: readonly NetBody[], disks: readonly DiskConfig[], vsockConfig: VsockConfig | undefined, storedFds: boolean): NetConfig[] {
  const out = list.map((n, i) => netConfig({
    id: n.id, tap: n.tap, mac: n.mac, host_mac: n.host_mac, ip: n.ip, mask: n.mask,
    fd: storedFds && typeof n.fd === 'number' ? n.fd : undefined,
  }, i, (key) => ({ text: `net[${i}].${key}`, field: `net[${i}].${key}` }), { tapWithFd: storedFds }));
  const others = new Map<string, string>(disks.map((d) => [d.id, 'a disk\'s']));
  if (vsockConfig !== undefined) others.set(vsockConfig.id, 'the vsock device\'s');
  checkNetIds(out, others, (i) => ({ text: `net[${i}].id`, field: `net[${i}].id` }));
  return out;
}

/** A `serial` or `console` section (Cloud Hypervisor's ConsoleConfig): which fields go with which mode. */
function port(p: PortBody | undefined, name: 'serial' | 'console'): PortConfig | undefined {
  if (p === undefined) return undefined;
  const { mode } = p;
  if (mode === 'File') {
    if (p.file === undefined) throw new ConfigError(`${name}.file: required when ${name}.mode is File`, { field: `${name}.file` });
    return { mode, file: p.file };
  }
  // In Pty mode `file` is the terminal a running VMM opened, as vm.info reports it: a config
  // copied from there is accepted, and the new VM gets a terminal of its own.
  if (p.file !== undefined && mode !== 'Pty') {
    throw new ConfigError(`${name}.file: only valid when ${name}.mode is File (it is ${mode})`, { field: `${name}.file` });
  }
  if (p.socket !== undefined) {
    if (mode !== 'Socket') throw new ConfigError(`${name}.socket: only valid when ${name}.mode is Socket (it is ${mode})`, { field: `${name}.socket` });
    return { mode, socket: p.socket };
  }
  return { mode };
}

/** Cloud Hypervisor's `rng` section; its default when absent. */
function rng(r: VmConfigBody['rng']): RngConfig {
  const limiter = r?.rate_limiter_config;
  if (limiter === undefined) return r?.src === undefined ? DEFAULT_RNG : { src: r.src };
  return { src: r?.src ?? DEFAULT_RNG.src, rate_limiter_config: limiter };
}

export interface VmConfigRules {
  /**
   * A snapshot's config (SnapshotVmConfig): accept any non-empty disk id, as `--disk id=` does,
   * not only the API's 1-64 characters of A-Z a-z 0-9 _ . -, and a network device's inherited
   * `fd` as recorded: a snapshot stores the config of a VM the CLI may have made.
   */
  cliDiskIds?: boolean;
}

/**
 * A `vm.create` body (Cloud Hypervisor field names) → VmConfig with defaults filled in:
 * cpus 1/1, memory 512 MiB, no disks, serial Null, console Tty. Throws ConfigError naming the bad field.
 */
export function parseVmConfigJson(value: unknown, rules: VmConfigRules = {}): VmConfig {
  const o: VmConfigBody = rules.cliDiskIds === true ? validateJson(SnapshotVmConfig, value) : validateJson(VmConfigSchema, value);
  const sections: Partial<Record<ChTopLevelSection, unknown>> = {};
  // Kept as given (each checked off or at its default by the schema), so vm.info reports them back.
  for (const section of CH_TOP_LEVEL_SECTIONS) if (section in o) sections[section] = o[section];
  // In field order, so the first bad field is the one reported.
  const config = {
    ...sections,
    cpus: cpus(o.cpus),
    memory: { size: o.memory?.size ?? DEFAULT_MEMORY_SIZE },
    payload: payload(o),
    disks: disks(o.disks),
    ...resolvePorts(port(o.serial, 'serial'), port(o.console, 'console')),
    rng: rng(o.rng),
    ...(o.vsock == null ? {} : { vsock: vsock(o.vsock, o.disks) }),
  };
  const netConfigs = nets(o.net ?? [], config.disks, config.vsock, rules.cliDiskIds === true);
  return netConfigs.length === 0 ? config : { ...config, net: netConfigs };
}

export function parseSnapshotRequest(value: unknown): SnapshotRequest {
  return validateJson(VmSnapshotConfig, value);
}

/** vm.resize-disk: `{"id": "_disk0", "desired_size": 2147483648}` (bytes; the VMM checks it against the disk). */
export function parseResizeDiskRequest(value: unknown): ResizeDiskRequest {
  return validateJson(VmResizeDiskConfig, value);
}

/**
 * vm.restore as Cloud Hypervisor's RestoreConfig (ch-remote sends every field: `net_fds` is null
 * when no network is handed over) plus tsvmm's `force`, `disk_paths`, `backing_files`,
 * `vsock_socket` and `network_overrides` (each device id at most once).
 */
export function parseRestoreRequest(value: unknown): RestoreRequest {
  const { net_fds: _netFds, ...req } = validateJson(RestoreConfig, value);
  const seen = new Set<string>();
  (req.network_overrides ?? []).forEach((o, i) => {
    const field = `network_overrides[${i}].iface_id`;
    if (seen.has(o.iface_id)) throw new ConfigError(`${field}: "${o.iface_id}" is given more than once`, { field });
    seen.add(o.iface_id);
  });
  return req;
}
