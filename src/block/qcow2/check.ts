import { AUTOCLEAR_BITMAPS, EXT_BITMAPS } from './format.js';
import { decodeL2, getEntry, l1Offset } from './entries.js';
import type { Qcow2Metadata } from './metadata.js';
import { readRefcount } from './refcounts.js';
import { fixCopiedFlags, readSnapshots, serializeSnapshots } from './snapshots.js';

/** What `qemu-img check` reports, with the same meaning for each count. */
export interface CheckReport {
  checkErrors: number;
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** One line per problem found, for the human-readable output. */
  messages: string[];
}

export type RepairMode = 'none' | 'leaks' | 'all';

interface Scan {
  refs: Map<number, number>;
  fileClusters: number;
  report: CheckReport;
}

/**
 * Recomputes every cluster's reference count from the metadata (header, L1/L2 of the active state
 * and of each snapshot, refcount structures, snapshot table, bitmaps) and compares it with the
 * stored refcounts: stored < computed is a corruption, stored > computed a leak.
 */
async function scan(image: Qcow2Metadata): Promise<Scan> {
  const cs = image.clusterSize;
  const fileClusters = Math.ceil((await image.file.length()) / cs);
  const refs = new Map<number, number>();
  const report: CheckReport = {
    checkErrors: 0, corruptions: 0, leaks: 0, corruptionsFixed: 0, leaksFixed: 0, imageEndOffset: 0,
    totalClusters: Math.ceil(image.size / cs), allocatedClusters: 0, fragmentedClusters: 0, compressedClusters: 0, messages: [],
  };
  const ref = (offset: number, bytes: number, what: string): void => {
    if (bytes <= 0) return;
    if (!Number.isSafeInteger(offset) || offset >= 2 ** 56 || bytes > 2 ** 40) {
      report.corruptions++;
      report.messages.push(`ERROR ${what} at offset ${offset} is outside any possible image`);
      return;
    }
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + bytes - 1) / cs);
    for (let c = first; c <= last; c++) {
      if (c >= fileClusters) {
        report.corruptions++;
        report.messages.push(`ERROR ${what} at offset ${c * cs} is beyond the end of the image file`);
        continue;
      }
      refs.set(c, (refs.get(c) ?? 0) + 1);
    }
  };
  const walkL1 = async (l1: Uint8Array, active: boolean): Promise<void> => {
    let nextContiguous = 0;
    for (let i = 0; i < l1.byteLength / 8; i++) {
      const l2 = l1Offset(getEntry(l1, i));
      if (l2 === 0) continue;
      if (l2 % cs !== 0 || l2 >= fileClusters * cs) {
        report.corruptions++;
        report.messages.push(`ERROR L2 table at offset ${l2} is unaligned or beyond the end of the file`);
        continue;
      }
      ref(l2, cs, 'L2 table');
      const table = await image.loadL2(l2);
      for (let j = 0; j < image.l2Entries; j++) {
        const entry = getEntry(table, j);
        if (entry === 0n) continue;
        const m = decodeL2(entry, image.clusterBits, image.header.version);
        if (m.kind === 'compressed') {
          ref(m.hostOffset, m.maxBytes, 'compressed cluster');
          if (active) {
            report.allocatedClusters++;
            report.compressedClusters++;
            report.fragmentedClusters++;
          }
          continue;
        }
        if (m.kind === 'unallocated' || (m.kind === 'zero' && m.hostOffset === 0)) continue;
        if (m.hostOffset % cs !== 0) {
          report.corruptions++;
          report.messages.push(`ERROR data cluster at offset ${m.hostOffset} is not cluster-aligned`);
          continue;
        }
        ref(m.hostOffset, cs, 'data cluster');
        if (active) {
          report.allocatedClusters++;
          if (nextContiguous !== 0 && m.hostOffset !== nextContiguous) report.fragmentedClusters++;
          nextContiguous = m.hostOffset + cs;
        }
      }
    }
  };
  const h = image.header;
  ref(0, cs, 'header');
  ref(h.l1TableOffset, h.l1Size * 8, 'L1 table');
  await walkL1(image.l1, true);
  ref(image.refcounts.tableOffset, image.refcounts.tableClusters * cs, 'refcount table');
  for (let t = 0; t < image.refcounts.tableEntries; t++) {
    const b = image.refcounts.blockOffset(t);
    if (b !== 0) ref(b, cs, 'refcount block');
  }
  const snapshots = await readSnapshots(image);
  ref(h.snapshotsOffset, serializeSnapshots(snapshots).byteLength, 'snapshot table');
  for (const s of snapshots) {
    if (s.l1Size * 8 > 32 * 1024 * 1024 || s.l1TableOffset % cs !== 0) {
      report.corruptions++;
      report.messages.push(`ERROR snapshot ${s.id} has an invalid L1 table (offset ${s.l1TableOffset}, ${s.l1Size} entries)`);
      continue;
    }
    ref(s.l1TableOffset, s.l1Size * 8, 'snapshot L1 table');
    const l1 = new Uint8Array(s.l1Size * 8);
    await image.file.readAt(s.l1TableOffset, l1);
    await walkL1(l1, false);
  }
  await scanBitmaps(image, ref);
  return { refs, report, fileClusters };
}

/** Bitmap directory, bitmap tables and their data clusters (only while the extension is valid). */
async function scanBitmaps(image: Qcow2Metadata, ref: (offset: number, bytes: number, what: string) => void): Promise<void> {
  const ext = image.header.extensions.find((e) => e.type === EXT_BITMAPS);
  if (ext === undefined || !(image.header.autoclear & AUTOCLEAR_BITMAPS) || ext.data.byteLength < 24) return;
  const v = new DataView(ext.data.buffer, ext.data.byteOffset);
  const count = v.getUint32(0, false);
  const dirSize = Number(v.getBigUint64(8, false));
  const dirOffset = Number(v.getBigUint64(16, false));
  if (dirSize > 64 * 1024 * 1024) return;
  ref(dirOffset, dirSize, 'bitmap directory');
  const dir = new Uint8Array(dirSize);
  await image.file.readAt(dirOffset, dir);
  const dv = new DataView(dir.buffer);
  let at = 0;
  for (let i = 0; i < count && at + 24 <= dirSize; i++) {
    const tableOffset = Number(dv.getBigUint64(at, false));
    const tableEntries = dv.getUint32(at + 8, false);
    const nameSize = dv.getUint16(at + 18, false);
    const extraSize = dv.getUint32(at + 20, false);
    ref(tableOffset, tableEntries * 8, 'bitmap table');
    const table = new Uint8Array(tableEntries * 8);
    await image.file.readAt(tableOffset, table);
    for (let j = 0; j < tableEntries; j++) {
      const off = l1Offset(getEntry(table, j));
      if (off !== 0) ref(off, image.clusterSize, 'bitmap data');
    }
    at += Math.ceil((24 + extraSize + nameSize) / 8) * 8;
  }
}

/** Compares stored and computed refcounts (and COPIED flags); repairs per `mode`. */
export async function checkImage(image: Qcow2Metadata, mode: RepairMode = 'none'): Promise<CheckReport> {
  return image.lock.exclusive(async () => {
    // The check reads the file's structures: cached metadata goes there first.
    if (!image.readOnly) await image.flushUnlocked();
    const first = await compare(image, mode);
    if (mode === 'none' || (first.leaksFixed === 0 && first.corruptionsFixed === 0)) return first;
    const again = await compare(image, 'none');
    again.leaksFixed = first.leaksFixed;
    again.corruptionsFixed = first.corruptionsFixed;
    again.messages = [...first.messages, ...again.messages];
    return again;
  });
}

async function compare(image: Qcow2Metadata, mode: RepairMode): Promise<CheckReport> {
  const { refs, report, fileClusters } = await scan(image);
  const E = image.refcounts.entriesPerBlock;
  // Stored refcounts of every cluster inside the file, one pass over the refcount blocks.
  const stored = new Float64Array(fileClusters);
  for (let t = 0; t < image.refcounts.tableEntries && t * E < fileClusters; t++) {
    const offset = image.refcounts.blockOffset(t);
    if (offset === 0) continue;
    const block = await image.refcounts.blockData(offset);
    const n = Math.min(E, fileClusters - t * E);
    for (let i = 0; i < n; i++) stored[t * E + i] = readRefcount(block, i, image.refcounts.bits);
  }
  let highest = -1;
  const fixes: { cluster: number; value: number; leak: boolean }[] = [];
  for (let c = 0; c < fileClusters; c++) {
    const have = stored[c]!;
    const computed = refs.get(c) ?? 0;
    if (have > 0 || computed > 0) highest = c;
    if (have === computed) continue;
    if (have < computed) {
      report.corruptions++;
      report.messages.push(`ERROR cluster ${c} refcount=${have} reference=${computed}`);
      if (mode === 'all') fixes.push({ cluster: c, value: computed, leak: false });
    } else {
      report.leaks++;
      report.messages.push(`Leaked cluster ${c} refcount=${have} reference=${computed}`);
      if (mode !== 'none') fixes.push({ cluster: c, value: computed, leak: true });
    }
  }
  report.imageEndOffset = (highest + 1) * image.clusterSize;
  if (!image.readOnly && fixes.length > 0) {
    for (const f of fixes) {
      await image.refcounts.set(f.cluster, f.value);
      if (f.leak) report.leaksFixed++;
      else report.corruptionsFixed++;
    }
    await image.refcounts.writeBack();
    await image.barrier();
    image.refcounts.resetHint();
  }
  // COPIED must be set exactly for refcount 1 in the active tables.
  const copiedErrors = await countCopiedErrors(image, report, fixes.length === 0 ? stored : null);
  if (copiedErrors > 0 && mode === 'all' && !image.readOnly) {
    await fixCopiedFlags(image);
    report.corruptionsFixed += copiedErrors;
  }
  return report;
}

async function countCopiedErrors(image: Qcow2Metadata, report: CheckReport, stored: Float64Array | null): Promise<number> {
  const refcount = async (cluster: number): Promise<number> =>
    stored !== null && cluster < stored.length ? stored[cluster]! : image.refcounts.get(cluster);
  let errors = 0;
  for (let i = 0; i < image.l1Size; i++) {
    const e = getEntry(image.l1, i);
    const l2 = l1Offset(e);
    if (l2 === 0 || l2 % image.clusterSize !== 0) continue;
    const rc = await refcount(l2 / image.clusterSize);
    if ((rc === 1) !== ((e >> 63n) === 1n)) {
      errors++;
      report.messages.push(`ERROR OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${e.toString(16)} refcount=${rc}`);
    }
    const table = await image.loadL2(l2);
    for (let j = 0; j < image.l2Entries; j++) {
      const entry = getEntry(table, j);
      if (entry === 0n) continue;
      const m = decodeL2(entry, image.clusterBits, image.header.version);
      if (m.kind !== 'data' && !(m.kind === 'zero' && m.hostOffset !== 0)) continue;
      const drc = await refcount(m.hostOffset / image.clusterSize);
      if ((drc === 1) !== m.copied) {
        errors++;
        report.messages.push(`ERROR OFLAG_COPIED data cluster: offset=${m.hostOffset} refcount=${drc}`);
      }
    }
  }
  report.corruptions += errors;
  return errors;
}

/** Makes the stored refcounts equal to the computed ones (dirty images; `check -r all`). */
export async function rebuildRefcounts(image: Qcow2Metadata): Promise<void> {
  await compare(image, 'all');
}
