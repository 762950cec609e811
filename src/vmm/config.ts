/**
 * The VM configuration, shaped like Cloud Hypervisor's `vm.create` body (snake_case fields), so
 * the same JSON works for the CLI, the API and `vm.json` in snapshots. Immutable once built: what
 * changes while a VM runs (a disk's current image after a disk snapshot or block job) lives in
 * the VM's Disk objects, and Vm.config assembles the config as it stands now from them.
 */
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
  /** Stable name used by the API and snapshots; defaults to `disk<N>`. */
  readonly id: string;
  /** virtio-blk GET_ID string (up to 20 bytes). */
  readonly serial?: string;
  /** 'raw' | 'qcow2'; detected from the image's magic when absent. */
  readonly format?: string;
}

export type SerialMode = 'Tty' | 'File' | 'Off' | 'Null' | 'Socket';

export interface SerialConfig {
  readonly mode: SerialMode;
  readonly file?: string;
}

export interface VmConfig {
  readonly cpus: CpusConfig;
  readonly memory: MemoryConfig;
  readonly payload: PayloadConfig;
  readonly disks: readonly DiskConfig[];
  readonly serial: SerialConfig;
}

/** Lifecycle states as Cloud Hypervisor names them in `vm.info`. */
export type VmState = 'Created' | 'Running' | 'Paused' | 'Shutdown';
