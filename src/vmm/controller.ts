import type { VmConfig, VmState } from './config.js';
import type { LiveSnapshotSummary, ResizeDiskRequest, RestoreRequest, SnapshotRequest } from './requests.js';
import type {
  DiskSnapshotRequest, LastOperation, SnapshotCreateRequest, SnapshotListing, SnapshotListRequest, SnapshotNameRequest,
} from './checkpoints/types.js';
import type { BlockJobInfo, BlockCommitRequest, BlockPullRequest, JobCancelRequest } from './jobs/types.js';

/**
 * What the control plane (HTTP API, CLI) may ask of the VMM. The API server is written against
 * this interface only; `src/vmm/vmm.ts` implements it. Methods throw TsvmmError subclasses whose
 * `code` the API maps to HTTP status (see src/vmm/api/status.ts):
 *   ENOVM -> 404, EINVALIDSTATE / EINVALIDCONFIG -> 400, ECONFLICT -> 409, anything else -> 500.
 */
/** A device resource as Cloud Hypervisor's device tree lists it (serde's external tagging). */
export type DeviceResource =
  | { PioAddressRange: { base: number; size: number } }
  | { MmioAddressRange: { base: number; size: number } }
  | { LegacyIrq: number };

/** One device of vm.info's `device_tree`, in Cloud Hypervisor's DeviceNode shape. */
export interface DeviceNode {
  id: string;
  resources: DeviceResource[];
  parent: string | null;
  children: string[];
  pci_bdf: string | null;
}

export interface VmInfo {
  config: VmConfig;
  state: VmState;
  memory_actual_size: number;
  /** The devices of a built VM by id (absent before vm.boot/vm.restore), as Cloud Hypervisor reports them. */
  device_tree?: Record<string, DeviceNode>;
  /** tsvmm extension: block-commit / block-pull jobs and their progress (present once any ran). */
  block_jobs?: BlockJobInfo[];
}

export interface DeviceCounters {
  [counter: string]: number;
}

/** Per-vCPU exit counts ("vcpu0": {"io": n, "mmio": n, ...}) and per-device counters. */
export type VmCounters = Record<string, DeviceCounters>;



/** Events in Cloud Hypervisor's event-monitor shape. */
export interface VmmEvent {
  timestamp: { secs: number; nanos: number };
  source: 'vmm' | 'vm' | 'vcpu' | 'device';
  event: string;
  properties: Record<string, unknown> | null;
}

/** The guest's console ports: the serial port (ttyS0) and the virtio console (hvc0). */
export type ConsolePortName = 'serial' | 'console';

export interface ConsoleAttachment {
  /** Bytes from the guest's port. */
  onOutput(listener: (bytes: Uint8Array) => void): void;
  /** Bytes typed by the user, to the guest's port. */
  input(bytes: Uint8Array): void;
  detach(): void;
}

export interface VmmController {
  ping(): { build_version: string; version: string; pid: number; features: string[] };
  info(): VmInfo;
  counters(): VmCounters;
  create(config: VmConfig): Promise<void>;
  boot(): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  shutdown(): Promise<void>;
  /** Shuts the VM down if it runs and forgets it (Cloud Hypervisor's vm.delete); nothing to delete is fine. */
  delete(): Promise<void>;
  reboot(): Promise<void>;
  /** Presses the ACPI power button of a running VM (the guest decides what to do: usually power off). */
  powerButton(): Promise<void>;
  /** Resolves to the live snapshot's report (a live request on a running VM), else undefined. */
  snapshot(req: SnapshotRequest): Promise<LiveSnapshotSummary | undefined>;
  restore(req: RestoreRequest): Promise<void>;
  /** Grows a disk of the running or paused VM; the guest's driver is told the new capacity. */
  resizeDisk(req: ResizeDiskRequest): Promise<void>;
  /** Stops the VM if any, then the VMM process. */
  shutdownVmm(): Promise<void>;
  /** Subscribes to lifecycle events; returns an unsubscribe function. */
  subscribe(listener: (e: VmmEvent) => void): () => void;
  /**
   * Attaches to a port configured as `socket`, else throws; without `port`, the serial port if it
   * is in socket mode, else the virtio console.
   */
  attachConsole(port?: ConsolePortName): ConsoleAttachment;

  // Disk snapshots, named checkpoints and block jobs (src/vmm/checkpoints/, src/vmm/jobs/).
  /** Live external snapshot: the disk continues on a new overlay at `file`. */
  snapshotDisk?(req: DiskSnapshotRequest): Promise<void>;
  snapshotCreate?(req: SnapshotCreateRequest): Promise<void>;
  snapshotList?(req: SnapshotListRequest): SnapshotListing;
  snapshotRevert?(req: SnapshotNameRequest): Promise<void>;
  snapshotDelete?(req: SnapshotNameRequest): Promise<void>;
  /** What the last disk-snapshot operation measured (pause times, files), if any. */
  lastDiskOperation?(): LastOperation | null;
  blockCommit?(req: BlockCommitRequest): Promise<void>;
  blockPull?(req: BlockPullRequest): Promise<void>;
  blockJobs?(): BlockJobInfo[];
  blockJobCancel?(req: JobCancelRequest): Promise<void>;
}
