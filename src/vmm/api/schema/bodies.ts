/**
 * The request bodies of the API, as schemas (json-schema.ts): the server validates each body
 * against these objects and tools/gen-openapi.mjs prints the same objects into
 * docs/openapi.json's components.schemas (a unit test keeps the file equal to them). What a schema
 * cannot say (cross-field rules such as max_vcpus >= boot_vcpus, defaults) is done by the parse
 * function of the body (validate.ts, checkpoint-routes.ts) after the schema has passed.
 */
import { CH_TOP_LEVEL_SECTIONS, DEFAULT_VSOCK_ID, type ChTopLevelSection } from '../../config.js';
import { MAX_GUEST_CID, MIN_GUEST_CID } from '../../../devices/vsock/virtio-vsock/persist.js';
import { SNAPSHOT_NAME } from '../../checkpoints/catalogue.js';
import { DEFAULT_NET_MASK, IPV4_MEANS, IPV4_PATTERN, MAC_MEANS, MAC_PATTERN, NET_ID_MEANS, NET_ID_PATTERN, TAP_NAME_MEANS, TAP_NAME_PATTERN } from '../../net-config.js';
import { arr, bool, int, map, obj, offOrDefault, str, type OffOrDefaultSchema, type Schema } from './json-schema.js';

const MAX_VCPUS = 254; // Cloud Hypervisor's limit (8-bit APIC IDs minus broadcast)
export const DEFAULT_MEMORY_SIZE = 512 * 1024 * 1024; // Cloud Hypervisor's default
const MAX_MEMORY = 2 ** 46; // 64 TiB: beyond any host this runs on, and well inside 2^53
const PATH_MAX = 4096;

function chFields<const K extends string>(names: readonly K[], defaults = ''): Record<K, OffOrDefaultSchema> {
  const note = `Cloud Hypervisor field tsvmm has nothing behind yet: accepted only off (null, false, empty)${defaults === '' ? '' : ` or at its default (${defaults})`}; anything else is a 400 naming it.`;
  return Object.fromEntries(names.map((n) => [n, offOrDefault(note)])) as Record<K, OffOrDefaultSchema>;
}

/** String options, spread into str() with a field's own description. */
const HOST_PATH = { minLength: 1, maxLength: PATH_MAX, 'x-tsvmm-format': 'path' } as const;
const ABSOLUTE_PATH = { minLength: 1, maxLength: PATH_MAX, 'x-tsvmm-format': 'absolute-path' } as const;
const DISK_REF = { minLength: 1, maxLength: 64, 'x-tsvmm-format': 'text' } as const;

export const CpusConfig = obj({
  boot_vcpus: int({ minimum: 1, maximum: MAX_VCPUS, default: 1 }),
  max_vcpus: int({ minimum: 1, maximum: MAX_VCPUS, description: 'Defaults to boot_vcpus; must be >= boot_vcpus.' }),
  ...chFields(['topology', 'kvm_hyperv', 'max_phys_bits', 'affinity', 'features', 'nested'], 'max_phys_bits 46'),
});

export const MemoryConfig = obj({
  size: int({ format: 'int64', minimum: 1 << 20, maximum: MAX_MEMORY, multipleOf: 4096, example: DEFAULT_MEMORY_SIZE, description: 'Bytes, a multiple of the 4096-byte page; default (when `memory` is absent) 512 MiB.' }),
  ...chFields(['mergeable', 'hotplug_method', 'hotplug_size', 'hotplugged_size', 'shared', 'hugepages', 'hugepage_size', 'prefault', 'zones', 'thp'], 'hotplug_method Acpi; thp true or false'),
}, { required: ['size'] });

export const PayloadConfig = obj({
  kernel: str({ ...HOST_PATH, example: '/path/to/vmlinux', description: 'The guest kernel: an ELF vmlinux (PVH note) or a bzImage.' }),
  initramfs: str({ ...HOST_PATH, nullable: true }),
  cmdline: str({ 'x-tsvmm-format': 'text', nullable: true }),
  ...chFields(['firmware', 'igvm', 'host_data']),
}, { required: ['kernel'], example: { kernel: '/path/to/vmlinux' } });

const DISK_ID_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';

/** A disk as vm.create takes it; `id` is the API's rule, or any non-empty text for a snapshot's config (the CLI's rule). */
function diskConfig<const I extends Schema>(id: I) {
  return obj({
    path: str({ ...HOST_PATH, example: '/var/lib/images/disk.raw' }),
    readonly: bool({ default: false, nullable: true }),
    id,
    serial: str({ 'x-tsvmm-format': 'text', nullable: true, description: 'virtio-blk ID, at most 20 bytes (UTF-8).' }),
    format: str({ enum: ['raw', 'qcow2'], nullable: true, description: 'tsvmm\'s name for image_type; detected from the image when both are absent.' }),
    image_type: str({ enum: ['Raw', 'Qcow2', 'Unknown'], nullable: true, description: 'Cloud Hypervisor\'s name for the format (Unknown: detect). Give image_type or format, not both.' }),
    backing_files: bool({ nullable: true, description: 'Follow the backing file a qcow2 image names (default false, as Cloud Hypervisor): an image naming one is refused otherwise, before that file is opened. true in vm.info for a disk tsvmm moved onto an overlay it made.' }),
    ...chFields(['direct', 'iommu', 'num_queues', 'queue_size', 'vhost_user', 'vhost_socket', 'rate_limit_group', 'rate_limiter_config',
      'disable_io_uring', 'disable_aio', 'pci_segment', 'queue_affinity', 'sparse'], 'num_queues 1, queue_size 128 or 256, sparse true, pci_segment 0'),
  }, { required: ['path'] });
}

export const DiskConfig = diskConfig(str({
  pattern: DISK_ID_PATTERN, nullable: true, 'x-tsvmm-pattern-means': '1-64 characters of A-Z a-z 0-9 _ . -',
  description: 'Unique; defaults to _diskN (Cloud Hypervisor\'s style: _disk0, _disk1, ... in order).',
}));

export const ConsoleConfig = obj({
  mode: str({
    enum: ['Tty', 'Pty', 'File', 'Off', 'Null', 'Socket'], 'x-tsvmm-case-insensitive': true,
    description: 'Case-insensitive. Off: no device; Null: a device whose output goes nowhere; Pty: a new pseudo-terminal (vm.info reports it in `file`); Socket: served at /vm.console (?port=serial|console), and on `socket` when given. Defaults: serial Null; console Tty, or Off when serial is Tty.',
  }),
  file: str({ ...HOST_PATH, nullable: true, 'x-tsvmm-with': { mode: 'File' }, description: 'Required with mode File; with Pty, the terminal a running VMM opened (as vm.info reports it; a new VM opens its own). Refused with other modes.' }),
  socket: str({ ...HOST_PATH, nullable: true, 'x-tsvmm-with': { mode: 'Socket' }, description: 'With mode Socket: tsvmm listens on this Unix socket and its one client is the port (Cloud Hypervisor\'s socket=PATH); without it the port is served at /vm.console. Refused with other modes.' }),
  ...chFields(['iommu']),
}, {
  required: ['mode'],
  description: 'A console port\'s host end (Cloud Hypervisor\'s ConsoleConfig): the serial port (`serial`, the guest\'s ttyS0) or the virtio console (`console`, hvc0). Only one of them may be Tty.',
});

/** Cloud Hypervisor's TokenBucketConfig (its disks' rate_limiter_config). */
const TokenBucketConfig = obj({
  size: int({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Capacity in tokens (bytes or requests); 0: no limit.' }),
  one_time_burst: int({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, nullable: true, description: 'Extra tokens at start, never refilled.' }),
  refill_time: int({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Milliseconds to refill the bucket from empty; 0: no limit.' }),
}, { required: ['size', 'refill_time'] });

const RateLimiterConfig = obj({
  bandwidth: { ...TokenBucketConfig, nullable: true, description: 'Bytes.' },
  ops: { ...TokenBucketConfig, nullable: true, description: 'Requests.' },
}, { description: 'Token buckets, as Cloud Hypervisor\'s rate_limiter_config.' });

export const RngConfig = obj({
  src: str({ ...HOST_PATH, nullable: true, description: 'Host file the device reads (default /dev/urandom).' }),
  rate_limiter_config: { ...RateLimiterConfig, nullable: true, description: 'tsvmm extension (Cloud Hypervisor has it on disks and nets): how fast the guest may draw entropy.' },
  ...chFields(['iommu']),
}, { description: 'Cloud Hypervisor\'s rng section: the virtio-rng device (always present) and the host file it reads. Default (when `rng` is absent) {"src": "/dev/urandom"}.' });

export const VsockConfig = obj({
  cid: int({ format: 'int64', minimum: MIN_GUEST_CID, maximum: MAX_GUEST_CID, example: 3, description: 'The guest\'s context ID.' }),
  socket: str({ ...HOST_PATH, example: '/run/vm.vsock', description: 'The Unix socket tsvmm listens on: a host program connects and sends `CONNECT <port>\\n` to reach guest port <port> (answered `OK <host port>\\n`); the guest\'s connections to host port P go to `<socket>_P`.' }),
  id: str({ pattern: DISK_ID_PATTERN, nullable: true, 'x-tsvmm-pattern-means': '1-64 characters of A-Z a-z 0-9 _ . -', description: `The device id in vm.counters and vm.info; default ${DEFAULT_VSOCK_ID}.` }),
  ...chFields(['iommu', 'pci_segment'], 'pci_segment 0'),
}, { required: ['cid', 'socket'], description: 'Cloud Hypervisor\'s vsock section: virtio-vsock in the hybrid mode (Unix sockets on the host).' });

const TAP_NAME = { pattern: TAP_NAME_PATTERN, 'x-tsvmm-pattern-means': TAP_NAME_MEANS } as const;
const NET_ID = { pattern: NET_ID_PATTERN, 'x-tsvmm-pattern-means': NET_ID_MEANS } as const;
const NO_FDS_OVER_THE_API = 'handing a tap fd over the API would need SCM_RIGHTS: give tap, or start tsvmm with --net fd=N';

/** Cloud Hypervisor's NetConfig as vm.info writes it: every field. */
const NET_EXAMPLE = {
  tap: 'tap0', ip: '192.168.249.1', mask: DEFAULT_NET_MASK, mac: '12:34:56:78:9a:bc', host_mac: null, mtu: null, iommu: false,
  num_queues: 2, queue_size: 256, vhost_user: false, vhost_socket: null, vhost_mode: 'Client', id: '_net0', fds: null,
  rate_limiter_config: null, pci_segment: 0, offload_tso: true, offload_ufo: true, offload_csum: true,
};

/**
 * A network device as vm.create takes it; `fd` (tsvmm's record of an inherited tap, `--net fd=N`)
 * is the API's rule (off only) or, for a snapshot's config, the fd as recorded.
 */
function netConfig<const F extends Schema, const M extends Schema, const R extends 'mac' = never>(fd: F, mac: M, required: readonly R[]) {
  return obj({
    tap: str({ ...TAP_NAME, nullable: true, example: 'tap0', description: 'The host TAP interface: opened when it exists, created otherwise (and removed with the VM). Absent (and no fd): a new tap named by the kernel, as Cloud Hypervisor does.' }),
    ip: str({ pattern: IPV4_PATTERN, 'x-tsvmm-pattern-means': IPV4_MEANS, nullable: true, example: '192.168.249.1', description: 'IPv4 address tsvmm gives the host side of the tap.' }),
    mask: str({
      pattern: IPV4_PATTERN, 'x-tsvmm-pattern-means': IPV4_MEANS, nullable: true, example: DEFAULT_NET_MASK, 'x-tsvmm-with': { ip: '192.168.249.1' },
      description: `Netmask of ip (contiguous); only with ip, default ${DEFAULT_NET_MASK}.`,
    }),
    mac,
    host_mac: str({ ...MAC_SCHEMA, nullable: true, description: 'The tap\'s own MAC address, set when given; otherwise the kernel\'s choice, which vm.info and snapshots record so that a restore on a new tap keeps it (the guest\'s neighbour cache holds it).' }),
    id: str({ ...NET_ID, nullable: true, description: 'The device id in vm.counters, vm.info and network_overrides; unique among devices; default _netN (_net0, _net1, ... in order).' }),
    fd,
    fds: offOrDefault(`Cloud Hypervisor's inherited tap fds: only null or [] (${NO_FDS_OVER_THE_API}).`),
    ...chFields(['mtu', 'iommu', 'num_queues', 'queue_size', 'vhost_user', 'vhost_socket', 'vhost_mode', 'rate_limiter_config',
      'pci_segment', 'offload_tso', 'offload_ufo', 'offload_csum'], 'num_queues 2, queue_size 256, vhost_mode Client, pci_segment 0; offload_tso, offload_ufo and offload_csum true or null'),
  }, { required, example: NET_EXAMPLE, description: 'Cloud Hypervisor\'s NetConfig: a virtio-net device on a host TAP interface (one queue pair). vm.info reports the id and MAC the device got.' });
}

const MAC_SCHEMA = { pattern: MAC_PATTERN, 'x-tsvmm-pattern-means': MAC_MEANS, example: '12:34:56:78:9a:bc' } as const;

export const NetConfig = netConfig(
  offOrDefault(`tsvmm's record of an inherited tap fd (--net fd=N), as vm.info reports it: only null here (${NO_FDS_OVER_THE_API}).`),
  str({ ...MAC_SCHEMA, nullable: true, description: 'The guest\'s MAC address, unicast; default a random locally administered one, kept across snapshots.' }),
  [],
);

/** A network device in a snapshot's config: its MAC always recorded, and an inherited fd as it was (a restore needs network_overrides for it). */
const SnapshotNetConfig = netConfig(
  int({ minimum: 3, maximum: 0x7fff_ffff, nullable: true }),
  str(MAC_SCHEMA),
  ['mac'],
);

/** The older top-level kernel/initramfs/cmdline objects: instead of payload, never beside it. */
const LEGACY = { deprecated: true, 'x-tsvmm-instead-of': 'payload' } as const;
const LEGACY_KERNEL = { kernel: { path: '/path/to/vmlinux' } } as const;

/**
 * A vm.create body as Cloud Hypervisor's own vm.info returns it (what ch-remote and orchestrators
 * send): every section, mostly off. Both console ports are off so that the document's example runs
 * headless (and either port can be put on the terminal by changing one field).
 */
const CLOUD_HYPERVISOR_VM_CONFIG = {
  cpus: { boot_vcpus: 2, max_vcpus: 2, topology: null, kvm_hyperv: false, max_phys_bits: 46, affinity: null, features: { amx: false } },
  memory: {
    size: 536870912, mergeable: false, hotplug_method: 'Acpi', hotplug_size: null, hotplugged_size: null, shared: false,
    hugepages: false, hugepage_size: null, prefault: false, zones: null, thp: true,
  },
  payload: { firmware: null, kernel: '/path/to/vmlinux', cmdline: 'console=hvc0 root=/dev/vda1 rw', initramfs: null, igvm: null, host_data: null },
  rate_limit_groups: null,
  disks: [{
    path: '/var/lib/images/root.qcow2', readonly: false, direct: false, iommu: false, num_queues: 1, queue_size: 128, vhost_user: false,
    vhost_socket: null, rate_limit_group: null, rate_limiter_config: null, id: '_disk0', disable_io_uring: false,
    disable_aio: false, pci_segment: 0, serial: null, queue_affinity: null, image_type: 'Qcow2', backing_files: false, sparse: true,
  }],
  net: null, rng: { src: '/dev/urandom', iommu: false }, balloon: null, fs: null, pmem: null,
  serial: { file: null, mode: 'Null', iommu: false, socket: null },
  console: { file: null, mode: 'Off', iommu: false, socket: null },
  debug_console: { file: null, mode: 'Off', iobase: null },
  devices: null, user_devices: null, vdpa: null, vsock: null, pvpanic: false, iommu: false, sgx_epc: null, numa: null,
  watchdog: false, platform: { num_pci_segments: 1, iommu_segments: null, serial_number: null, uuid: null, oem_strings: null },
  tpm: null, preserved_fds: null, landlock_enable: false, landlock_rules: null, pci_segments: null, ivshmem: null,
};

function vmConfig<const D extends Schema, const N extends Schema>(disk: D, net: N) {
  return obj({
    cpus: CpusConfig,
    memory: MemoryConfig,
    payload: PayloadConfig,
    kernel: obj({ path: str(HOST_PATH) }, { required: ['path'], ...LEGACY, description: 'Older form of payload.kernel.' }),
    initramfs: obj({ path: str(HOST_PATH) }, { required: ['path'], ...LEGACY, 'x-tsvmm-with': LEGACY_KERNEL, description: 'Older form of payload.initramfs.' }),
    cmdline: obj({ args: str({ 'x-tsvmm-format': 'text' }) }, { required: ['args'], ...LEGACY, 'x-tsvmm-with': LEGACY_KERNEL, description: 'Older form of payload.cmdline.' }),
    disks: arr(disk, { nullable: true }),
    serial: ConsoleConfig,
    console: ConsoleConfig,
    rng: RngConfig,
    vsock: { ...VsockConfig, nullable: true },
    net: arr(net, { nullable: true, description: 'Network devices (Cloud Hypervisor\'s `net`), in this order after the other virtio devices.' }),
    ...chFields(CH_TOP_LEVEL_SECTIONS as readonly ChTopLevelSection[], 'platform num_pci_segments 1'),
  }, { example: CLOUD_HYPERVISOR_VM_CONFIG, description: 'Cloud Hypervisor\'s vm.create body. Give either `payload` or the older top-level `kernel`/`initramfs`/`cmdline` objects. Cloud Hypervisor sections tsvmm has nothing behind yet are kept as given and reported back by vm.info.' });
}

export const VmConfig = vmConfig(DiskConfig, NetConfig);

/** The config stored in a snapshot: as VmConfig, but disk ids as the CLI allows them (any non-empty text) and nets as recorded (SnapshotNetConfig). */
export const SnapshotVmConfig = vmConfig(diskConfig(str({ minLength: 1, 'x-tsvmm-format': 'text', nullable: true })), SnapshotNetConfig);

export const VmSnapshotConfig = obj({
  destination_url: str({ 'x-tsvmm-format': 'file-url', example: 'file:///var/lib/tsvmm/snap1', description: 'file:// URL of a local directory.' }),
  disks: bool({ description: 'tsvmm extension: a system checkpoint. Every writable disk continues on a new qcow2 overlay; the snapshot records the now read-only images (disks.json), and each restore gets its own new overlay over them.' }),
  live: bool({ description: 'tsvmm extension: snapshot a running VM while it runs; it is paused only to copy the pages it dirtied last and its device state, and the answer (200) reports the pause. On a paused VM: an ordinary snapshot (204).' }),
}, { required: ['destination_url'] });

export const RestoreConfig = obj({
  source_url: str({ 'x-tsvmm-format': 'file-url', example: 'file:///var/lib/tsvmm/snap1' }),
  prefault: bool({ default: false, description: 'With OnDemand: read the memory files\' data at restore instead of on first touch.' }),
  memory_restore_mode: str({
    enum: ['Copy', 'OnDemand'], 'x-tsvmm-case-insensitive': true,
    description: 'Copy: read guest memory into fresh RAM now (the VM no longer depends on the files; Cloud Hypervisor\'s default). OnDemand: map the files copy-on-write and read each page on first touch (tsvmm\'s default when absent: restore time does not grow with RAM).',
  }),
  resume: bool({ default: false, description: 'Resume the VM once restored (otherwise it comes back Paused).' }),
  net_fds: offOrDefault('Cloud Hypervisor\'s network fds: only null or [] (handing fds over the API would need SCM_RIGHTS); give the restored devices their taps with network_overrides.'),
  force: bool({ default: false, description: 'tsvmm: restore even over disks that changed since the snapshot.' }),
  disk_paths: map(str(HOST_PATH), { description: 'tsvmm: disk id to the image path to use instead of the recorded one (clones).' }),
  backing_files: bool({ description: 'tsvmm extension: backing_files for the images disk_paths names (e.g. qcow2 overlays made with qemu-img); absent, each disk keeps what the snapshot recorded.' }),
  vsock_socket: str({ ...HOST_PATH, description: 'tsvmm extension: the Unix socket of the restored VM\'s vsock device instead of the recorded one (clones running at once each need their own).' }),
  network_overrides: arr(obj({
    iface_id: str({ ...NET_ID, description: 'The network device\'s id (vm.info config.net[].id).' }),
    host_dev_name: str({ ...TAP_NAME, description: 'The host TAP interface it uses instead of the recorded one (or of a recorded inherited fd).' }),
  }, { required: ['iface_id', 'host_dev_name'] }), { description: 'tsvmm extension, in Firecracker\'s shape: network devices moved onto other taps (clones running at once each need their own; a device that had an inherited fd needs one).' }),
}, {
  required: ['source_url'],
  example: { source_url: 'file:///var/lib/tsvmm/snap1', prefault: false, memory_restore_mode: 'Copy', net_fds: null, resume: false },
  description: 'Cloud Hypervisor\'s RestoreConfig, as ch-remote sends it (every field), plus tsvmm\'s force, disk_paths, backing_files, vsock_socket and network_overrides.',
});

export const VmResizeDiskConfig = obj({
  id: str({ ...DISK_REF, description: 'The disk id, as vm.info lists it.' }),
  desired_size: int({ format: 'int64', minimum: 1, maximum: Number.MAX_SAFE_INTEGER, example: 2 ** 31, description: 'The new size in bytes: a multiple of 512, not smaller than the disk.' }),
}, { required: ['id', 'desired_size'] });

export const DiskSnapshotConfig = obj({
  disk: str({ ...DISK_REF, description: 'Disk id (vm.info config.disks[].id).' }),
  file: str({ ...ABSOLUTE_PATH, description: 'The new qcow2 overlay (must not exist).' }),
}, { required: ['disk', 'file'] });

export const SnapshotCreateConfig = obj({
  name: str({ pattern: SNAPSHOT_NAME.source, 'x-tsvmm-pattern-means': "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit" }),
  disk_only: bool(),
  description: str({ maxLength: PATH_MAX, 'x-tsvmm-format': 'text' }),
  snapshot_dir: str({ ...ABSOLUTE_PATH, description: 'Catalogue folder (default <disk 0 folder>/<base image stem>.snapshots).' }),
}, { required: ['name'] });

export const SnapshotNameConfig = obj({
  name: str({ minLength: 1, maxLength: 64, 'x-tsvmm-format': 'text' }),
  snapshot_dir: str({ ...ABSOLUTE_PATH, description: 'Catalogue folder (default as for vm.snapshot-create).' }),
}, { required: ['name'] });

const rateLimit = int({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Bytes per second the job copies at most (0 or absent: unlimited).' });

export const BlockCommitConfig = obj({
  disk: str({ ...DISK_REF, description: 'Disk id (vm.info config.disks[].id).' }),
  top: str({ ...ABSOLUTE_PATH, description: 'Image to merge down (default: the active one; then the guest pivots onto base).' }),
  base: str({ ...ABSOLUTE_PATH, description: 'Image to merge into (default: top\'s backing file).' }),
  rate_limit: rateLimit,
}, { required: ['disk'] });

export const BlockPullConfig = obj({
  disk: str({ ...DISK_REF, description: 'Disk id (vm.info config.disks[].id).' }),
  base: str({ ...ABSOLUTE_PATH, description: 'Keep this image as backing file (default: pull everything).' }),
  rate_limit: rateLimit,
}, { required: ['disk'] });

export const JobCancelConfig = obj({
  id: str({ minLength: 1, maxLength: 64, 'x-tsvmm-format': 'text', description: 'The job id, as vm.block-jobs lists it.' }),
}, { required: ['id'] });

/**
 * The schemas docs/openapi.json names, in its order. Nested ones (CpusConfig inside VmConfig)
 * are printed as `$ref`s to their own entry.
 */
export const BODY_SCHEMAS = {
  VmConfig, CpusConfig, MemoryConfig, PayloadConfig, DiskConfig, ConsoleConfig, RngConfig, VsockConfig, NetConfig,
  VmSnapshotConfig, RestoreConfig, VmResizeDiskConfig, DiskSnapshotConfig, SnapshotCreateConfig,
  SnapshotNameConfig, BlockCommitConfig, BlockPullConfig, JobCancelConfig,
} as const satisfies Record<string, Schema>;

export type BodySchemaName = keyof typeof BODY_SCHEMAS;
