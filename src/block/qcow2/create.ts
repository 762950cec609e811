import { ConfigError } from '../../errors.js';
import { l1EntriesFor, serializeHeader, type Qcow2Header } from './format.js';
import { HostFile } from '../host-file.js';
import { writeRefcount } from './refcounts.js';

export interface CreateQcow2Options {
  size: number;
  clusterSize?: number;
  refcountBits?: number;
  /** '1.1' → version 3 (default), '0.10' → version 2. */
  compat?: '0.10' | '1.1';
  /** Backing file name exactly as stored (relative names resolve against the new image's folder). */
  backingFile?: string | null;
  backingFormat?: string | null;
}

/**
 * Writes an empty qcow2 image: header cluster, refcount table, refcount blocks and the L1 table,
 * contiguous from cluster 0, with refcount 1 each. The header is written last.
 */
export async function createQcow2(path: string, options: CreateQcow2Options): Promise<void> {
  const clusterSize = options.clusterSize ?? 65536;
  const clusterBits = Math.log2(clusterSize);
  if (!Number.isInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) {
    throw new ConfigError(`cluster_size ${clusterSize} must be a power of two between 512 and 2M`);
  }
  const compat = options.compat ?? '1.1';
  if (compat !== '0.10' && compat !== '1.1') throw new ConfigError(`compat "${String(compat)}" must be 0.10 or 1.1`);
  const version = compat === '0.10' ? 2 : 3;
  const refcountBits = options.refcountBits ?? 16;
  const refcountOrder = Math.log2(refcountBits);
  if (!Number.isInteger(refcountOrder) || refcountOrder < 0 || refcountOrder > 6) {
    throw new ConfigError(`refcount_bits ${refcountBits} must be a power of two between 1 and 64`);
  }
  if (version === 2 && refcountBits !== 16) throw new ConfigError('refcount_bits other than 16 needs compat=1.1');
  const size = options.size;
  if (!Number.isSafeInteger(size) || size < 0 || size > 2 ** 56) throw new ConfigError(`image size ${size} is not valid`);
  if (options.backingFile && options.backingFile.length > 1023) throw new ConfigError('backing file name is longer than 1023 bytes');

  const l1Size = Math.max(1, l1EntriesFor(size, clusterBits));
  const l1Clusters = Math.ceil((l1Size * 8) / clusterSize);
  const perBlock = (clusterSize * 8) / refcountBits;
  let blocks = 1;
  let tableClusters = 1;
  for (;;) {
    const used = 1 + tableClusters + blocks + l1Clusters;
    const nextBlocks = Math.ceil(used / perBlock);
    const nextTable = Math.ceil((nextBlocks * 8) / clusterSize);
    if (nextBlocks === blocks && nextTable === tableClusters) break;
    blocks = nextBlocks;
    tableClusters = nextTable;
  }
  const used = 1 + tableClusters + blocks + l1Clusters;
  const tableOffset = clusterSize;
  const blocksOffset = tableOffset + tableClusters * clusterSize;
  const l1Offset = blocksOffset + blocks * clusterSize;

  const table = new Uint8Array(tableClusters * clusterSize);
  const tableView = new DataView(table.buffer);
  for (let b = 0; b < blocks; b++) tableView.setBigUint64(b * 8, BigInt(blocksOffset + b * clusterSize), false);
  const refBlocks = new Uint8Array(blocks * clusterSize);
  for (let c = 0; c < used; c++) writeRefcount(refBlocks, c, refcountBits, 1);

  const header: Qcow2Header = {
    version, backingFileOffset: 0, backingFileSize: 0, clusterBits, size, cryptMethod: 0, l1Size,
    l1TableOffset: l1Offset, refcountTableOffset: tableOffset, refcountTableClusters: tableClusters,
    nbSnapshots: 0, snapshotsOffset: 0, incompatible: 0n, compatible: 0n, autoclear: 0n, refcountOrder,
    headerLength: version === 3 ? 112 : 72, compressionType: 0, extensions: [],
    backingFile: options.backingFile ?? null, backingFormat: options.backingFile ? options.backingFormat ?? null : null,
    featureNames: [],
  };
  const file = await HostFile.open(path, true, true);
  try {
    await file.writeAt(tableOffset, table);
    await file.writeAt(blocksOffset, refBlocks);
    await file.writeAt(l1Offset, new Uint8Array(l1Clusters * clusterSize));
    await file.writeAt(0, serializeHeader(header));
    await file.datasync();
  } finally {
    await file.close();
  }
}
