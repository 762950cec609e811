/** Request and response bodies of the disk-snapshot API (vm.snapshot-disk, vm.snapshot-create/list/revert/delete). */
import type { CatalogueEntry } from './catalogue.js';

export interface DiskSnapshotRequest { disk: string; file: string }
export interface SnapshotCreateRequest { name: string; disk_only?: boolean; description?: string; snapshot_dir?: string }
export interface SnapshotNameRequest { name: string; snapshot_dir?: string }
export interface SnapshotListRequest { snapshot_dir?: string }

export interface SnapshotListItem {
  name: string;
  created: string;
  kind: CatalogueEntry['kind'];
  parent: string | null;
  description: string;
  vm_state: CatalogueEntry['vm_state'];
  paused_ms: number;
  current: boolean;
  /** Bytes on disk: the memory state plus the frozen overlays this catalogue created. */
  size_bytes: number;
  disks: Array<{ id: string; path: string }>;
}

export interface SnapshotListing {
  snapshot_dir: string;
  current: string | null;
  snapshots: SnapshotListItem[];
}

/** The result of the last operation, for the API (PUT routes answer 204 without a body). */
export interface LastOperation {
  operation: string;
  finished: string;
  result: Record<string, unknown>;
}
