import type { DiskIdentity } from '../disk-identity.js';

export interface FrozenDisk {
  id: string;
  /** The read-only image holding the disk as it was at the checkpoint. */
  path: string;
  format: string;
  size: number;
  identity: DiskIdentity;
  /** A read-only disk: recorded so a restore checks it is unchanged, but it gets no overlay. */
  readonly?: true;
}
