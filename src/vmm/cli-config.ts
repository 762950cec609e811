import { ConfigError } from '../errors.js';
import { parseCount, parseKeyValues, parseToggle, unquote } from '../util/kv.js';
import { parseSize } from '../util/size.js';
import type { ApiListen } from './api/server.js';
import type { RateLimiterConfig, TokenBucketConfig } from '../devices/rate-limiter.js';
import { DEFAULT_RNG, DEFAULT_VSOCK_ID, defaultDiskId, resolvePorts, type DiskConfig, type NetConfig, type PortConfig, type RngConfig, type VmConfig, type VsockConfig } from './config.js';
import { checkNetIds, netConfig } from './net-config.js';
import { MAX_GUEST_CID, MIN_GUEST_CID } from '../devices/vsock/virtio-vsock/persist.js';

/** Highest vCPU count we accept on the command line; KVM's own limit is checked at boot. */
export const MAX_VCPUS = 254;
/** Guest RAM bounds: enough for the boot tables, and what x86-64 4-level paging can address. */
export const MIN_MEMORY = 2 * 1024 * 1024;
export const MAX_MEMORY = 1024 * 1024 * 1024 * 1024;

export interface CliVmOptions {
  kernel?: string;
  initramfs?: string;
  cmdline?: string;
  cpus?: string;
  memory?: string;
  disk?: string[];
  serial?: string;
  console?: string;
  rng?: string;
  vsock?: string;
  net?: string[];
}

export function parseCpus(text: string): VmConfig['cpus'] {
  const kv = parseKeyValues(text, 'cpus', ['boot', 'max'], 'boot');
  const boot = parseCount(kv.get('boot') ?? '1', '--cpus boot', 1, MAX_VCPUS);
  const max = parseCount(kv.get('max') ?? String(boot), '--cpus max', 1, MAX_VCPUS);
  if (max < boot) throw new ConfigError(`--cpus: max (${max}) is below boot (${boot})`);
  return { boot_vcpus: boot, max_vcpus: max };
}

export function parseMemory(text: string): VmConfig['memory'] {
  const kv = parseKeyValues(text, 'memory', ['size'], 'size');
  const size = parseSize(kv.get('size') ?? '512M', '--memory size');
  if (size < MIN_MEMORY) throw new ConfigError(`--memory size: ${size} bytes is too small (at least 2M)`);
  if (size > MAX_MEMORY) throw new ConfigError(`--memory size: ${size} bytes is more than tsvmm supports (1T)`);
  if (size % 4096 !== 0) throw new ConfigError('--memory size: must be a multiple of 4K');
  return { size };
}

export function parseDisk(text: string, index: number): DiskConfig {
  // image_type is Cloud Hypervisor's name for the format (format= is tsvmm's own, kept as an alias).
  const kv = parseKeyValues(text, 'disk', ['path', 'readonly', 'id', 'serial', 'format', 'image_type', 'backing_files'], 'path');
  const path = kv.get('path');
  if (path === undefined || path === '') throw new ConfigError('--disk: path= is required');
  const readonly = kv.has('readonly') ? parseToggle(kv.get('readonly')!, '--disk readonly') : false;
  const id = kv.get('id') ?? defaultDiskId(index);
  const serial = kv.get('serial');
  if (serial !== undefined && Buffer.byteLength(serial) > 20) throw new ConfigError('--disk serial: at most 20 bytes (virtio-blk GET_ID)');
  if (kv.has('format') && kv.has('image_type')) throw new ConfigError('--disk: give image_type= or format=, not both');
  const formatKey = kv.has('image_type') ? 'image_type' : 'format';
  const format = kv.get(formatKey);
  if (format !== undefined && format !== 'raw' && format !== 'qcow2') throw new ConfigError(`--disk ${formatKey}: "${format}" must be raw or qcow2 (tsvmm reads no other image type yet)`);
  const backingFiles = kv.has('backing_files') ? parseToggle(kv.get('backing_files')!, '--disk backing_files') : false;
  return {
    path, readonly, id,
    ...(serial === undefined ? {} : { serial }),
    ...(format === undefined ? {} : { format }),
    ...(backingFiles ? { backing_files: true } : {}),
  };
}

/**
 * `--api-socket` as Cloud Hypervisor takes it: `path=PATH`, `fd=N` (a socket that is already bound
 * and listening, inherited from the parent), or a bare path.
 */
export function parseApiSocket(text: string): ApiListen {
  if (text.startsWith('fd=')) {
    const fd = text.slice(3);
    if (!/^\d+$/.test(fd) || Number(fd) < 3 || Number(fd) > 0x7fff_ffff) throw new ConfigError(`--api-socket fd=: "${fd}" must be the number of an inherited listening socket (3 or more)`);
    return { fd: Number(fd) };
  }
  const path = text.startsWith('path=') ? text.slice(5) : text;
  if (path === '') throw new ConfigError('--api-socket path=: a path is required');
  if (path.includes(',')) throw new ConfigError(`--api-socket: "${text}" takes one of path=PATH, fd=N or a bare path`);
  return { path };
}

/**
 * `--serial` / `--console` as Cloud Hypervisor takes them: off, null, tty, pty, file=PATH,
 * socket=PATH, and tsvmm's bare `socket` (the port is reached through the API's vm.console).
 */
export function parsePort(text: string, flag: '--serial' | '--console'): PortConfig {
  const lower = text.toLowerCase();
  if (lower === 'tty') return { mode: 'Tty' };
  if (lower === 'off') return { mode: 'Off' };
  if (lower === 'null') return { mode: 'Null' };
  if (lower === 'socket') return { mode: 'Socket' };
  if (text.startsWith('file=')) {
    const file = unquote(text.slice(5));
    if (file === '') throw new ConfigError(`${flag} file=: a path is required`);
    return { mode: 'File', file };
  }
  if (text.startsWith('socket=')) {
    const socket = unquote(text.slice(7));
    if (socket === '') throw new ConfigError(`${flag} socket=: a path is required`);
    return { mode: 'Socket', socket };
  }
  if (lower === 'pty') return { mode: 'Pty' };
  throw new ConfigError(`${flag}: "${text}" must be tty, pty, file=PATH, socket=PATH, socket, null or off`);
}

/** Rate-limiter keys as Cloud Hypervisor's `--disk` has them: bandwidth in bytes, ops in requests. */
const BUCKET_KEYS = ['size', 'one_time_burst', 'refill_time'] as const;
const RATE_LIMIT_KEYS = ['bw', 'ops'].flatMap((b) => BUCKET_KEYS.map((k) => `${b}_${k}`));

function rateLimiterFromKeys(kv: Map<string, string>, option: string): RateLimiterConfig | undefined {
  const bucket = (prefix: 'bw' | 'ops'): TokenBucketConfig | undefined => {
    const get = (k: string): number | undefined => {
      const v = kv.get(`${prefix}_${k}`);
      return v === undefined ? undefined : parseCount(v, `--${option} ${prefix}_${k}`, 0, Number.MAX_SAFE_INTEGER);
    };
    const [size, burst, refill] = BUCKET_KEYS.map(get);
    if (size === undefined && burst === undefined && refill === undefined) return undefined;
    if (size === undefined || refill === undefined) {
      throw new ConfigError(`--${option}: ${prefix}_size and ${prefix}_refill_time go together (${prefix}_one_time_burst is optional)`);
    }
    return { size, refill_time: refill, ...(burst === undefined ? {} : { one_time_burst: burst }) };
  };
  const bandwidth = bucket('bw');
  const ops = bucket('ops');
  if (bandwidth === undefined && ops === undefined) return undefined;
  return { ...(bandwidth === undefined ? {} : { bandwidth }), ...(ops === undefined ? {} : { ops }) };
}

/**
 * `--rng src=PATH` as Cloud Hypervisor takes it (a bare path too), plus a rate limit in the
 * keys its `--disk` uses (`bw_size=,bw_refill_time=,bw_one_time_burst=`, `ops_...`).
 */
export function parseRng(text: string): RngConfig {
  const kv = parseKeyValues(text, 'rng', ['src', ...RATE_LIMIT_KEYS], 'src');
  const src = kv.get('src') ?? DEFAULT_RNG.src;
  if (src === '') throw new ConfigError('--rng src=: a path is required (e.g. /dev/urandom)');
  const limiter = rateLimiterFromKeys(kv, 'rng');
  return limiter === undefined ? { src } : { src, rate_limiter_config: limiter };
}

/**
 * `--vsock cid=N,socket=PATH[,id=NAME]` as Cloud Hypervisor takes it (`iommu=off` and
 * `pci_segment=0` accepted: tsvmm's devices are on virtio-mmio).
 */
export function parseVsock(text: string, diskIds: ReadonlySet<string> = new Set()): VsockConfig {
  const kv = parseKeyValues(text, 'vsock', ['cid', 'socket', 'id', 'iommu', 'pci_segment']);
  const cid = kv.get('cid');
  const socket = kv.get('socket');
  if (cid === undefined || socket === undefined || socket === '') throw new ConfigError('--vsock: cid= and socket= are required, e.g. cid=3,socket=/run/vm.vsock');
  if (kv.has('iommu') && parseToggle(kv.get('iommu')!, '--vsock iommu')) throw new ConfigError('--vsock iommu=on: tsvmm has no IOMMU');
  if (kv.has('pci_segment') && kv.get('pci_segment') !== '0') throw new ConfigError('--vsock pci_segment: tsvmm has one segment, 0');
  const id = kv.get('id') ?? DEFAULT_VSOCK_ID;
  if (id === '') throw new ConfigError('--vsock id=: a name is required');
  if (diskIds.has(id)) throw new ConfigError(`--vsock id: "${id}" is a disk's id`);
  return { cid: parseCount(cid, '--vsock cid', MIN_GUEST_CID, MAX_GUEST_CID), socket, id };
}

/** Cloud Hypervisor's `--net` keys that tsvmm accepts only at the one value it has. */
const NET_FIXED: Record<string, { ok: (value: string) => boolean; why: string }> = {
  num_queues: { ok: (v) => v === '2', why: 'tsvmm has one queue pair (num_queues=2)' },
  queue_size: { ok: (v) => v === '256', why: 'tsvmm\'s queues have 256 entries (queue_size=256)' },
  iommu: { ok: (v) => !parseToggle(v, '--net iommu'), why: 'tsvmm has no IOMMU' },
  vhost_user: { ok: (v) => !parseToggle(v, '--net vhost_user'), why: 'tsvmm has no vhost-user backends' },
  vhost_mode: { ok: (v) => v.toLowerCase() === 'client', why: 'tsvmm has no vhost-user backends' },
  pci_segment: { ok: (v) => v === '0', why: 'tsvmm has one segment, 0' },
  ...Object.fromEntries(['offload_tso', 'offload_ufo', 'offload_csum'].map((k) => [k, {
    ok: (v: string) => parseToggle(v, `--net ${k}`),
    why: 'tsvmm always offers the offloads (the guest\'s driver may leave them off)',
  }])),
};

/** Cloud Hypervisor's `--net` keys for what tsvmm has nothing behind yet. */
const NET_NOT_YET: Record<string, string> = {
  mtu: 'tsvmm does not set the MTU',
  socket: 'tsvmm has no vhost-user backends',
  ...Object.fromEntries(RATE_LIMIT_KEYS.map((k) => [k, 'tsvmm has no network rate limits yet'])),
};

/** `fd=N` or Cloud Hypervisor's list `fd=[N]`, of exactly one: tsvmm's device has one queue pair. */
function netFd(text: string): number {
  const list = /^\[(.*)\]$/.exec(text);
  const items = list === null ? [text] : list[1]!.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (items.length !== 1) throw new ConfigError(`--net fd: "${text}": tsvmm's device has one queue pair: give one fd (fd=N or fd=[N])`);
  if (!/^\d+$/.test(items[0]!)) throw new ConfigError(`--net fd: "${text}" must be the number of an inherited open tap (3 or more)`);
  return Number(items[0]);
}

/**
 * `--net tap=NAME,mac=MAC,ip=A.B.C.D,mask=A.B.C.D,id=NAME` or `fd=N` as Cloud Hypervisor takes it,
 * checked as vm.create's `net` entries are (net-config.ts); `index` gives the default id
 * (`_net<index>`). Its other keys are accepted at the only value tsvmm has (num_queues=2,
 * queue_size=256, iommu=off, vhost_user=off, pci_segment=0, offload_*=on) or refused naming them.
 */
export function parseNet(text: string, index: number): NetConfig {
  const kv = parseKeyValues(text, 'net', ['tap', 'mac', 'host_mac', 'ip', 'mask', 'id', 'fd', ...Object.keys(NET_FIXED), ...Object.keys(NET_NOT_YET)]);
  for (const [key, value] of kv) {
    const why = NET_NOT_YET[key];
    if (why !== undefined) throw new ConfigError(`--net ${key}: not supported yet: ${why}`);
    const fixed = NET_FIXED[key];
    if (fixed !== undefined && !fixed.ok(value)) throw new ConfigError(`--net ${key}=${value}: not supported: ${fixed.why}`);
  }
  const fd = kv.get('fd');
  return netConfig({
    id: kv.get('id'), tap: kv.get('tap'), mac: kv.get('mac'), host_mac: kv.get('host_mac'), ip: kv.get('ip'), mask: kv.get('mask'),
    fd: fd === undefined ? undefined : netFd(fd),
  }, index, (key) => ({ text: `--net ${key}` }));
}

/** Turns the `tsvmm` command-line options into a VmConfig (Cloud Hypervisor syntax). */
export function vmConfigFromCli(o: CliVmOptions): VmConfig {
  if (o.kernel === undefined) throw new ConfigError('--kernel is required to boot a VM');
  // yargs turns a bare `--disk` into an empty list; booting without the disk would hide the mistake.
  if (o.disk !== undefined && o.disk.length === 0) throw new ConfigError('--disk: a value is required: path=FILE[,readonly=on][,id=NAME]');
  const disks = (o.disk ?? []).map((d, i) => parseDisk(d, i));
  const ids = new Set<string>();
  for (const d of disks) {
    if (ids.has(d.id)) throw new ConfigError(`--disk: id "${d.id}" is used twice`);
    ids.add(d.id);
  }
  const payload: VmConfig['payload'] = {
    kernel: o.kernel,
    ...(o.initramfs === undefined ? {} : { initramfs: o.initramfs }),
    ...(o.cmdline === undefined ? {} : { cmdline: o.cmdline }),
  };
  const config = {
    cpus: parseCpus(o.cpus ?? 'boot=1'),
    memory: parseMemory(o.memory ?? 'size=512M'),
    payload,
    disks,
    ...resolvePorts(
      o.serial === undefined ? undefined : parsePort(o.serial, '--serial'),
      o.console === undefined ? undefined : parsePort(o.console, '--console'),
      { serial: '--serial', console: '--console' },
    ),
    rng: o.rng === undefined ? DEFAULT_RNG : parseRng(o.rng),
    ...(o.vsock === undefined ? {} : { vsock: parseVsock(o.vsock, ids) }),
  };
  // yargs turns a bare `--net` into an empty list, as it does `--disk`.
  if (o.net !== undefined && o.net.length === 0) throw new ConfigError('--net: a value is required: tap=NAME[,mac=MAC][,ip=A.B.C.D,mask=A.B.C.D][,id=NAME] or fd=N');
  const net = (o.net ?? []).map((n, i) => parseNet(n, i));
  const others = new Map<string, string>(disks.map((d) => [d.id, 'a disk\'s']));
  if (config.vsock !== undefined) others.set(config.vsock.id, 'the vsock device\'s');
  checkNetIds(net, others, () => ({ text: '--net id' }));
  return net.length === 0 ? config : { ...config, net };
}
