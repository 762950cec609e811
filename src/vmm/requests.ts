/** Bodies of the VM requests (vm.snapshot, vm.restore, vm.resize-disk) and what they report, shared by the API, the VMM and the CLI. */

export interface SnapshotRequest {
  destination_url: string;
  /**
   * tsvmm extension: a system checkpoint. Each writable disk continues on a new qcow2 overlay and
   * the snapshot records the now read-only images, so restoring it (any number of times) gives
   * disks consistent with memory; each restore writes to its own new overlay.
   */
  disks?: boolean;
  /**
   * tsvmm extension: snapshot the VM while it runs, pausing it only for the last dirty pages and
   * the device state (live-snapshot.ts). On a paused VM it is an ordinary snapshot.
   */
  live?: boolean;
}

/**
 * How a restore gets the guest's memory (Cloud Hypervisor's MemoryRestoreMode): `OnDemand` maps
 * the snapshot's memory files copy-on-write and reads each page on the guest's first touch (restore
 * time does not grow with RAM: tsvmm's default when the field is absent); `Copy` reads them into
 * fresh guest RAM up front (Cloud Hypervisor's default, what ch-remote sends unless told
 * otherwise), after which the VM no longer depends on the files.
 */
export type MemoryRestoreMode = 'Copy' | 'OnDemand';

export interface RestoreRequest {
  source_url: string;
  prefault?: boolean;
  memory_restore_mode?: MemoryRestoreMode;
  /** Resume the VM once it is restored (otherwise it comes back Paused). */
  resume?: boolean;
  /** tsvmm extension: restore even over disks that changed since the snapshot. */
  force?: boolean;
  /** tsvmm extension: disk id → image path to use instead of the recorded one (clones). */
  disk_paths?: Record<string, string>;
  /**
   * tsvmm extension: backing_files for the images `disk_paths` names (e.g. qcow2 overlays made
   * with qemu-img over the recorded disk); absent, each keeps what the snapshot recorded.
   */
  backing_files?: boolean;
  /** tsvmm extension: the vsock device's Unix socket instead of the recorded one (clones each need their own). */
  vsock_socket?: string;
  /**
   * tsvmm extension in Firecracker's shape (API `network_overrides`, CLI `net.ID=TAP`): network
   * devices moved onto other host taps, each id at most once. Clones running at once each need
   * their own; a device the snapshot recorded with an inherited fd needs one.
   */
  network_overrides?: NetworkOverride[];
}

/** One network device of a restore on another host TAP interface (Firecracker's NetworkOverride). */
export interface NetworkOverride {
  /** The device id (vm.info config.net[].id). */
  iface_id: string;
  /** The host TAP interface it uses instead of the recorded `tap` (or `fd`). */
  host_dev_name: string;
}

/** vm.resize-disk as Cloud Hypervisor takes it: the disk's id and its new size in bytes. */
export interface ResizeDiskRequest {
  id: string;
  desired_size: number;
}

/** What writing a snapshot reports (events; a live snapshot's answer builds on it). */
export interface SnapshotSummary {
  destination: string;
  memory_bytes_written: number;
  memory_bytes_allocated: number;
}

export interface LiveSnapshotRound {
  /** Pages copied in this round (the first round: the non-zero pages of all of RAM). */
  pages: number;
  /** Bytes written to the memory files (zero pages are punched out, not written). */
  bytes: number;
  ms: number;
}

export interface LiveSnapshotSummary extends SnapshotSummary {
  live: true;
  /** How long the guest was paused: from the pause request until it runs again. */
  pause_ms: number;
  /**
   * Where the pause went: stopping the vCPUs and draining device I/O, copying the last dirty
   * pages, saving vCPU/device state (and flushing disks, recording their identity), a
   * checkpoint's disk switch, resuming.
   */
  pause_phases: { stop_ms: number; copy_ms: number; state_ms: number; disks_ms: number; resume_ms: number };
  /** From the request to the committed snapshot. */
  total_ms: number;
  /** The copies made while the guest ran; the pause copies `final_pages` more. */
  rounds: LiveSnapshotRound[];
  final_pages: number;
  /** False when the guest dirtied memory too fast and was paused after its last round (or a round that did not help). */
  converged: boolean;
}
