import { Qcow2Error } from './errors.js';

/** On-disk constants of the qcow2 format (QEMU docs/interop/qcow2.txt). All numbers big-endian. */
export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_NAMES = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;

/** Field offsets the engine rewrites in place (each update is one small write inside sector 0). */
export const HDR_SIZE = 24; // size u64, then crypt_method u32, l1_size u32, l1_table_offset u64
export const HDR_L1 = 36; // l1_size u32 + l1_table_offset u64
/** QEMU's limit on the L1 table: 32 MiB of entries. */
export const L1_MAX_ENTRIES = (32 * 1024 * 1024) / 8;
export const HDR_REFCOUNT_TABLE = 48; // refcount_table_offset u64 + refcount_table_clusters u32
export const HDR_SNAPSHOTS = 60; // nb_snapshots u32 + snapshots_offset u64
export const HDR_INCOMPAT = 72;
export const HDR_AUTOCLEAR = 88;

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
export const V3_HEADER_LENGTH = 112; // 104 + compression_type byte, padded to 8

export interface HeaderExtension {
  type: number;
  data: Uint8Array;
}

export interface FeatureName {
  kind: 'incompatible' | 'compatible' | 'autoclear';
  bit: number;
  name: string;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Every extension in file order, including ones tsvmm does not interpret (kept on rewrite). */
  extensions: HeaderExtension[];
  backingFile: string | null;
  backingFormat: string | null;
  featureNames: FeatureName[];
}

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, false);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Qcow2Error(`qcow2 header field at byte ${at} is out of range (${v})`);
  return Number(v);
}

/** Reads the cluster bits from the fixed part of a header, to know how much to read next. */
export function peekClusterBits(first: Uint8Array): number {
  const view = new DataView(first.buffer, first.byteOffset, first.byteLength);
  if (first.byteLength < 72 || view.getUint32(0, false) !== QCOW2_MAGIC) throw new Qcow2Error('not a qcow2 image (bad magic)');
  const bits = view.getUint32(20, false);
  if (bits < MIN_CLUSTER_BITS || bits > MAX_CLUSTER_BITS) {
    throw new Qcow2Error(`unsupported qcow2 cluster size 2^${bits} (must be 512 B to 2 MiB)`, { feature: 'cluster_size' });
  }
  return bits;
}

/** Parses the header cluster: fixed fields, extensions, backing file name. Validates structure. */
export function parseHeader(cluster: Uint8Array): Qcow2Header {
  const view = new DataView(cluster.buffer, cluster.byteOffset, cluster.byteLength);
  const clusterBits = peekClusterBits(cluster);
  const clusterSize = 2 ** clusterBits;
  const version = view.getUint32(4, false);
  if (version !== 2 && version !== 3) throw new Qcow2Error(`unsupported qcow2 version ${version} (tsvmm reads versions 2 and 3)`, { feature: 'version' });
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(view, 8),
    backingFileSize: view.getUint32(16, false),
    clusterBits,
    size: u64(view, 24),
    cryptMethod: view.getUint32(32, false),
    l1Size: view.getUint32(36, false),
    l1TableOffset: u64(view, 40),
    refcountTableOffset: u64(view, 48),
    refcountTableClusters: view.getUint32(56, false),
    nbSnapshots: view.getUint32(60, false),
    snapshotsOffset: u64(view, 64),
    incompatible: 0n,
    compatible: 0n,
    autoclear: 0n,
    refcountOrder: 4,
    headerLength: 72,
    compressionType: 0,
    extensions: [],
    backingFile: null,
    backingFormat: null,
    featureNames: [],
  };
  if (version === 3) {
    h.incompatible = view.getBigUint64(72, false);
    h.compatible = view.getBigUint64(80, false);
    h.autoclear = view.getBigUint64(88, false);
    h.refcountOrder = view.getUint32(96, false);
    h.headerLength = view.getUint32(100, false);
    if (h.headerLength < 104 || h.headerLength % 8 !== 0 || h.headerLength > clusterSize) {
      throw new Qcow2Error(`corrupt qcow2 header: header_length ${h.headerLength} (must be >= 104, a multiple of 8)`);
    }
    if (h.headerLength > 104) h.compressionType = cluster[104]!;
    if (h.refcountOrder > 6) throw new Qcow2Error(`corrupt qcow2 header: refcount_order ${h.refcountOrder} > 6`);
  }
  const clusterAligned = (v: number): boolean => v % clusterSize === 0;
  if (!clusterAligned(h.l1TableOffset) || !clusterAligned(h.refcountTableOffset) || !clusterAligned(h.snapshotsOffset)) {
    throw new Qcow2Error('corrupt qcow2 header: a table offset is not cluster-aligned');
  }
  if (h.refcountTableClusters === 0 || h.refcountTableOffset === 0) throw new Qcow2Error('corrupt qcow2 header: no refcount table');
  if (h.refcountTableClusters * clusterSize > 8 * 1024 * 1024) {
    throw new Qcow2Error(`qcow2 refcount table of ${h.refcountTableClusters} clusters is too large (limit 8 MiB, as QEMU)`);
  }
  if (h.nbSnapshots > 65536) throw new Qcow2Error(`corrupt qcow2 header: ${h.nbSnapshots} snapshots (limit 65536)`);
  if (h.size > 2 ** 56) throw new Qcow2Error(`corrupt qcow2 header: virtual size ${h.size} is too large`);
  if (h.l1Size > L1_MAX_ENTRIES) throw new Qcow2Error(`qcow2 L1 table of ${h.l1Size} entries is too large (limit 32 MiB)`);
  if (h.l1Size < l1EntriesFor(h.size, clusterBits)) throw new Qcow2Error('corrupt qcow2 header: L1 table too small for the virtual size');

  // Extensions run from the end of the header to an end marker, all inside the first cluster.
  let at = h.headerLength;
  for (;;) {
    if (at + 8 > clusterSize) throw new Qcow2Error('corrupt qcow2 header: header extensions run past the first cluster');
    const type = view.getUint32(at, false);
    const length = view.getUint32(at + 4, false);
    if (type === EXT_END) break;
    if (at + 8 + length > clusterSize) throw new Qcow2Error(`corrupt qcow2 header: extension 0x${type.toString(16)} is too long`);
    const data = cluster.slice(at + 8, at + 8 + length);
    h.extensions.push({ type, data });
    if (type === EXT_BACKING_FORMAT) h.backingFormat = new TextDecoder().decode(data);
    if (type === EXT_FEATURE_NAMES) h.featureNames = parseFeatureNames(data);
    at += 8 + Math.ceil(length / 8) * 8;
  }
  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize > 1023 || h.backingFileOffset + h.backingFileSize > clusterSize) {
      throw new Qcow2Error('corrupt qcow2 header: backing file name is too long or outside the first cluster');
    }
    h.backingFile = new TextDecoder().decode(cluster.subarray(h.backingFileOffset, h.backingFileOffset + h.backingFileSize));
  }
  return h;
}

function parseFeatureNames(data: Uint8Array): FeatureName[] {
  const kinds = ['incompatible', 'compatible', 'autoclear'] as const;
  const out: FeatureName[] = [];
  for (let i = 0; i + 48 <= data.byteLength; i += 48) {
    const kind = kinds[data[i]!];
    if (kind === undefined) continue;
    const raw = data.subarray(i + 2, i + 48);
    const end = raw.indexOf(0);
    out.push({ kind, bit: data[i + 1]!, name: new TextDecoder().decode(end < 0 ? raw : raw.subarray(0, end)) });
  }
  return out;
}

/** The feature names tsvmm writes into images it creates (what QEMU writes, for other tools). */
export function standardFeatureTable(): Uint8Array {
  const entries: [number, number, string][] = [
    [0, 0, 'dirty bit'], [0, 1, 'corrupt bit'], [0, 2, 'external data file'], [0, 3, 'compression type'],
    [0, 4, 'extended L2 entries'], [1, 0, 'lazy refcounts'], [2, 0, 'bitmaps'], [2, 1, 'raw external data'],
  ];
  const out = new Uint8Array(entries.length * 48);
  entries.forEach(([kind, bit, name], i) => {
    out[i * 48] = kind;
    out[i * 48 + 1] = bit;
    out.set(new TextEncoder().encode(name), i * 48 + 2);
  });
  return out;
}

export function l1EntriesFor(size: number, clusterBits: number): number {
  const clusters = Math.ceil(size / 2 ** clusterBits);
  return Math.ceil(clusters / 2 ** (clusterBits - 3));
}

/**
 * Serialises the header, its extensions and the backing file name into one cluster-sized buffer.
 * Extensions the caller left in `extensions` are written back unchanged (except backing format and
 * feature names, which are regenerated from the typed fields).
 */
export function serializeHeader(h: Qcow2Header): Uint8Array {
  const clusterSize = 2 ** h.clusterBits;
  const out = new Uint8Array(clusterSize);
  const view = new DataView(out.buffer);
  view.setUint32(0, QCOW2_MAGIC, false);
  view.setUint32(4, h.version, false);
  view.setUint32(16, 0, false);
  view.setUint32(20, h.clusterBits, false);
  view.setBigUint64(24, BigInt(h.size), false);
  view.setUint32(32, h.cryptMethod, false);
  view.setUint32(36, h.l1Size, false);
  view.setBigUint64(40, BigInt(h.l1TableOffset), false);
  view.setBigUint64(48, BigInt(h.refcountTableOffset), false);
  view.setUint32(56, h.refcountTableClusters, false);
  view.setUint32(60, h.nbSnapshots, false);
  view.setBigUint64(64, BigInt(h.snapshotsOffset), false);
  const headerLength = h.version === 3 ? Math.max(h.headerLength, V3_HEADER_LENGTH) : 72;
  if (h.version === 3) {
    view.setBigUint64(72, h.incompatible, false);
    view.setBigUint64(80, h.compatible, false);
    view.setBigUint64(88, h.autoclear, false);
    view.setUint32(96, h.refcountOrder, false);
    view.setUint32(100, headerLength, false);
    out[104] = h.compressionType;
  }
  let at = headerLength;
  const put = (type: number, data: Uint8Array): void => {
    if (at + 8 + data.byteLength + 8 > clusterSize) throw new Qcow2Error('qcow2 header extensions do not fit in the first cluster');
    view.setUint32(at, type, false);
    view.setUint32(at + 4, data.byteLength, false);
    out.set(data, at + 8);
    at += 8 + Math.ceil(data.byteLength / 8) * 8;
  };
  if (h.backingFormat !== null && h.backingFile !== null) put(EXT_BACKING_FORMAT, new TextEncoder().encode(h.backingFormat));
  for (const ext of h.extensions) {
    if (ext.type !== EXT_BACKING_FORMAT && ext.type !== EXT_FEATURE_NAMES) put(ext.type, ext.data);
  }
  // The feature name table is a courtesy for other tools: left out when the cluster is too small.
  const names = standardFeatureTable();
  const backingBytes = h.backingFile === null ? 0 : new TextEncoder().encode(h.backingFile).byteLength;
  if (h.version === 3 && at + 8 + names.byteLength + 8 + backingBytes <= clusterSize) put(EXT_FEATURE_NAMES, names);
  view.setUint32(at, EXT_END, false);
  view.setUint32(at + 4, 0, false);
  at += 8;
  if (h.backingFile !== null) {
    const name = new TextEncoder().encode(h.backingFile);
    if (name.byteLength > 1023 || at + name.byteLength > clusterSize) throw new Qcow2Error('backing file name is too long (limit 1023 bytes)');
    out.set(name, at);
    view.setBigUint64(8, BigInt(at), false);
    view.setUint32(16, name.byteLength, false);
  }
  return out;
}

const KNOWN_INCOMPAT = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

/**
 * Refuses images whose features tsvmm does not implement, naming the feature. The corrupt bit only
 * blocks writable opens. Called before any other structure of the image is trusted.
 */
export function checkFeatures(h: Qcow2Header, path: string, writable: boolean): void {
  const refuse = (feature: string, what: string): never => {
    throw new Qcow2Error(`${path}: ${what} is not supported by tsvmm (convert the image with qemu-img first)`, { path, feature });
  };
  if (h.cryptMethod !== 0) refuse('encryption', `encryption (crypt_method ${h.cryptMethod === 1 ? 'AES' : h.cryptMethod === 2 ? 'LUKS' : h.cryptMethod})`);
  const unknown = h.incompatible & ~KNOWN_INCOMPAT;
  if (unknown !== 0n) {
    for (let bit = 0; bit < 64; bit++) {
      if ((unknown & (1n << BigInt(bit))) === 0n) continue;
      const named = h.featureNames.find((f) => f.kind === 'incompatible' && f.bit === bit);
      refuse(`incompatible-bit-${bit}`, `incompatible feature bit ${bit}${named ? ` "${named.name}"` : ''}`);
    }
  }
  if (h.incompatible & INCOMPAT_DATA_FILE) refuse('external-data-file', 'an external data file (incompatible bit 2)');
  if (h.incompatible & INCOMPAT_COMPRESSION || h.compressionType !== 0) {
    refuse('compression-type', `compression type ${h.compressionType === 1 ? 'zstd' : h.compressionType} (incompatible bit 3)`);
  }
  if (h.incompatible & INCOMPAT_EXTL2) refuse('extended-l2', 'extended L2 entries (subclusters, incompatible bit 4)');
  if (writable && h.incompatible & INCOMPAT_CORRUPT) {
    throw new Qcow2Error(`${path}: image is marked corrupt; open it read-only, or repair it with "qemu-img check -r all"`, { path, feature: 'corrupt' });
  }
}
