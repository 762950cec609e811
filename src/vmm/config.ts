/**
 * The VM configuration, shaped like Cloud Hypervisor's `vm.create` body (snake_case fields), so
 * the same JSON works for the CLI, the API and `vm.json` in snapshots. Immutable once built: what
 * changes while a VM runs (a disk's current image after a disk snapshot or block job) lives in
 * the VM's Disk objects, and Vm.config assembles the config as it stands now from them.
 */
import { randomBytes } from 'node:crypto';
import { ConfigError } from '../errors.js';
import type { RateLimiterConfig } from '../devices/rate-limiter.js';

export interface CpusConfig {
  readonly boot_vcpus: number;
  readonly max_vcpus: number;
}

export interface MemoryConfig {
  /** Bytes. */
  readonly size: number;
}

export interface PayloadConfig {
  readonly kernel: string;
  readonly initramfs?: string;
  readonly cmdline?: string;
}

export interface DiskConfig {
  readonly path: string;
  readonly readonly: boolean;
  /** Stable name used by the API and snapshots; defaults to `_disk<N>` (defaultDiskId). */
  readonly id: string;
  /** virtio-blk GET_ID string (up to 20 bytes). */
  readonly serial?: string;
  /** 'raw' | 'qcow2'; detected from the image's magic when absent. */
  readonly format?: string;
  /**
   * Cloud Hypervisor's backing_files: follow the backing file a qcow2 image names (default off:
   * that name is read from the image, and a raw disk the guest writes could be probed as a qcow2
   * image naming any host file). On for the disks tsvmm itself moved onto an overlay it created.
   */
  readonly backing_files?: boolean;
}

/** A disk's id when none is given: Cloud Hypervisor's (`_disk0`, `_disk1`, ... in config order). */
export function defaultDiskId(index: number): string {
  return `_disk${index}`;
}

/** How a console port (the serial port, the virtio console) is connected on the host; Cloud Hypervisor's modes. */
export type PortMode = 'Tty' | 'Pty' | 'File' | 'Off' | 'Null' | 'Socket';

/**
 * One console port's host end, as Cloud Hypervisor's `serial` and `console` sections have it. Off
 * means no device at all; Null a device whose output goes nowhere.
 */
export interface PortConfig {
  readonly mode: PortMode;
  /** File mode: the file written; Pty mode, in vm.info only: the terminal tsvmm opened (/dev/pts/N). */
  readonly file?: string;
  /**
   * Socket mode: the Unix socket tsvmm listens on for the port's client (Cloud Hypervisor's
   * `socket=PATH`). Absent: the port is reached through the API (`tsvmm-remote console`).
   */
  readonly socket?: string;
}

/** The 16550 UART at COM1 (the guest's ttyS0). */
export type SerialConfig = PortConfig;
/** The virtio console (the guest's hvc0). */
export type ConsoleConfig = PortConfig;

/** The virtio-rng device (the guest's /dev/hwrng) and the host file it reads, as Cloud Hypervisor's `rng`. */
export interface RngConfig {
  readonly src: string;
  /** Bytes and requests per second the guest may draw (Cloud Hypervisor's disk `rate_limiter_config` shape); absent: unlimited. */
  readonly rate_limiter_config?: RateLimiterConfig;
}

/**
 * The virtio-vsock device, as Cloud Hypervisor's `vsock` (`--vsock cid=N,socket=PATH`): the guest's
 * CID and the Unix socket of the hybrid host side (vmm/vsock-unix.ts).
 */
export interface VsockConfig {
  readonly cid: number;
  readonly socket: string;
  /** The device id in vm.counters and vm.info (Cloud Hypervisor's `id`); default `_vsock0`. */
  readonly id: string;
}

export const DEFAULT_VSOCK_ID = '_vsock0';

/**
 * A virtio-net device on a host TAP interface, as Cloud Hypervisor's `net` entries
 * (`--net tap=NAME,mac=...,ip=...,mask=...` or `fd=N`): frames pass between the guest and the tap
 * unchanged, with the virtio-net header the tap understands (IFF_VNET_HDR).
 */
export interface NetConfig {
  /** The device id in vm.counters, vm.info and restore overrides; default `_net<N>` (defaultNetId). */
  readonly id: string;
  /**
   * The host TAP interface: opened when it exists, created otherwise (then it goes with the VMM).
   * With `fd`, the name the kernel reports for that tap (informational).
   */
  readonly tap?: string;
  /** An open TAP file descriptor the VMM inherited (Cloud Hypervisor's `fd=`); never valid in a restored process. */
  readonly fd?: number;
  /** The guest's MAC address, `xx:xx:xx:xx:xx:xx`: given, or random (locally administered) and then kept, so clones keep it. */
  readonly mac: string;
  /**
   * The tap's own MAC address (Cloud Hypervisor's `host_mac`): set when given, otherwise the
   * kernel's choice, which vm.info and vm.json then record, so that a restore on a new tap keeps
   * the address the guest's neighbour cache holds (with another, its traffic would go nowhere
   * until the cache entry went stale).
   */
  readonly host_mac?: string;
  /** IPv4 address and netmask tsvmm gives the host side of a tap it opens by name (the tap is brought up either way). */
  readonly ip?: string;
  readonly mask?: string;
}

/** A network device's id when none is given: Cloud Hypervisor's (`_net0`, `_net1`, ...). */
export function defaultNetId(index: number): string {
  return `_net${index}`;
}

/**
 * A MAC address for a network device given none: random, unicast and locally administered (first
 * octet `xxxxxx10`), as Cloud Hypervisor makes one; lower-case `xx:xx:xx:xx:xx:xx`.
 */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Cloud Hypervisor's entropy source unless `--rng src=` / `rng.src` says otherwise. */
export const DEFAULT_RNG: RngConfig = { src: '/dev/urandom' };

/**
 * The serial port and the virtio console with Cloud Hypervisor's defaults (serial Null, console
 * Tty) and its rule that only one of them may use the terminal. One leniency: a serial port on
 * the terminal with no console given leaves the console off instead of failing, so `--serial tty`
 * alone (or `serial: {mode: "Tty"}`) means what it says.
 */
export function resolvePorts(serial: PortConfig | undefined, console: PortConfig | undefined, names = { serial: 'serial.mode', console: 'console.mode' }): { serial: PortConfig; console: PortConfig } {
  const s = serial ?? { mode: 'Null' };
  const c = console ?? (s.mode === 'Tty' ? { mode: 'Off' } : { mode: 'Tty' });
  if (s.mode === 'Tty' && c.mode === 'Tty') {
    throw new ConfigError(`${names.serial} and ${names.console} are both Tty: only one port can use the terminal (set the other Off, Null, File or Socket)`, { field: 'console.mode' });
  }
  return { serial: s, console: c };
}

/**
 * Cloud Hypervisor's top-level VmConfig sections tsvmm has nothing behind yet. vm.create accepts
 * them only null, false, empty or at their defaults (api/ch-sections.ts) and keeps them as given,
 * so vm.info and vm.json report them back.
 */
export const CH_TOP_LEVEL_SECTIONS = [
  'balloon', 'fs', 'pmem', 'debug_console', 'devices', 'user_devices', 'vdpa',
  'pvpanic', 'iommu', 'sgx_epc', 'numa', 'watchdog', 'platform', 'tpm', 'preserved_fds',
  'landlock_enable', 'landlock_rules', 'rate_limit_groups', 'pci_segments', 'ivshmem',
] as const;
export type ChTopLevelSection = (typeof CH_TOP_LEVEL_SECTIONS)[number];

export interface VmConfig extends Readonly<Partial<Record<ChTopLevelSection, unknown>>> {
  readonly cpus: CpusConfig;
  readonly memory: MemoryConfig;
  readonly payload: PayloadConfig;
  readonly disks: readonly DiskConfig[];
  readonly serial: SerialConfig;
  readonly console: ConsoleConfig;
  /**
   * Every VM built now has one (Cloud Hypervisor's default); absent only in the config of a
   * snapshot from before tsvmm had the device, whose restore must not add one.
   */
  readonly rng?: RngConfig;
  readonly vsock?: VsockConfig;
  /** Network devices, in slot order after the other virtio devices; absent or empty: none. */
  readonly net?: readonly NetConfig[];
}

/** Lifecycle states as Cloud Hypervisor names them in `vm.info`. */
export type VmState = 'Created' | 'Running' | 'Paused' | 'Shutdown';
