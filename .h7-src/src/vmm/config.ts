/**
 * The VM configuration, shaped like Cloud Hypervisor's `vm.create` body (snake_case fields), so
 * the same JSON works for the CLI, the API and `vm.json` in snapshots.
 */
export interface CpusConfig {
  boot_vcpus: number;
  max_vcpus: number;
}

export interface MemoryConfig {
  /** Bytes. */
  size: number;
}

export interface PayloadConfig {
  kernel: string;
  initramfs?: string;
  cmdline?: string;
}

export interface DiskConfig {
  path: string;
  readonly: boolean;
  /** Stable name used by the API and snapshots; defaults to `disk<N>`. */
  id: string;
  /** virtio-blk GET_ID string (up to 20 bytes). */
  serial?: string;
  /** 'raw' | 'qcow2'; detected from the image's magic when absent. */
  format?: string;
}

export type SerialMode = 'Tty' | 'File' | 'Off' | 'Null' | 'Socket';

export interface SerialConfig {
  mode: SerialMode;
  file?: string;
}

export interface VmConfig {
  cpus: CpusConfig;
  memory: MemoryConfig;
  payload: PayloadConfig;
  disks: DiskConfig[];
  serial: SerialConfig;
}

/** Lifecycle states as Cloud Hypervisor names them in `vm.info`. */
export type VmState = 'Created' | 'Running' | 'Paused' | 'Shutdown';
