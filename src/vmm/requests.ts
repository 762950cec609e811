/** Bodies of the VM lifecycle requests (vm.snapshot, vm.restore), shared by the API, the VMM and the CLI. */

export interface SnapshotRequest {
  destination_url: string;
  /**
   * tsvmm extension: a system checkpoint. Each writable disk continues on a new qcow2 overlay and
   * the snapshot records the now read-only images, so restoring it (any number of times) gives
   * disks consistent with memory; each restore writes to its own new overlay.
   */
  disks?: boolean;
}

export interface RestoreRequest {
  source_url: string;
  prefault?: boolean;
  /** tsvmm extension: restore even over disks that changed since the snapshot. */
  force?: boolean;
  /** tsvmm extension: disk id → image path to use instead of the recorded one (clones). */
  disk_paths?: Record<string, string>;
}
