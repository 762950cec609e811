import { HDR_L1, HDR_SNAPSHOTS } from './format.js';
import { FLAG_COPIED, decodeL2, getEntry, l1Offset, setEntry } from './entries.js';
import { Qcow2Error } from './errors.js';
import type { Qcow2Metadata } from './metadata.js';

/** One entry of the internal snapshot table. */
export interface SnapshotInfo {
  id: string;
  name: string;
  l1TableOffset: number;
  l1Size: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  vmStateSize: number;
  /** Virtual disk size recorded in the extra data (null when the entry has none). */
  diskSize: number | null;
  /** Extra data as stored (unknown fields are kept when the table is rewritten). */
  extra: Uint8Array;
}

const MAX_SNAPSHOTS = 65536;

export async function readSnapshots(image: Qcow2Metadata): Promise<SnapshotInfo[]> {
  const h = image.header;
  if (h.nbSnapshots > MAX_SNAPSHOTS) throw new Qcow2Error(`${image.path}: corrupt qcow2 image: ${h.nbSnapshots} snapshots`);
  const out: SnapshotInfo[] = [];
  let at = h.snapshotsOffset;
  for (let i = 0; i < h.nbSnapshots; i++) {
    const fixed = new Uint8Array(40);
    await image.file.readAt(at, fixed);
    const v = new DataView(fixed.buffer);
    const idSize = v.getUint16(12, false);
    const nameSize = v.getUint16(14, false);
    const extraSize = v.getUint32(36, false);
    if (extraSize > 1024) throw new Qcow2Error(`${image.path}: corrupt snapshot table: extra data of ${extraSize} bytes`);
    const rest = new Uint8Array(extraSize + idSize + nameSize);
    await image.file.readAt(at + 40, rest);
    const extra = rest.slice(0, extraSize);
    const ev = new DataView(extra.buffer);
    const dec = new TextDecoder();
    out.push({
      l1TableOffset: Number(v.getBigUint64(0, false)),
      l1Size: v.getUint32(8, false),
      id: dec.decode(rest.subarray(extraSize, extraSize + idSize)),
      name: dec.decode(rest.subarray(extraSize + idSize)),
      dateSec: v.getUint32(16, false),
      dateNsec: v.getUint32(20, false),
      vmClockNsec: Number(v.getBigUint64(24, false)),
      vmStateSize: extraSize >= 8 ? Number(ev.getBigUint64(0, false)) : v.getUint32(32, false),
      diskSize: extraSize >= 16 ? Number(ev.getBigUint64(8, false)) : null,
      extra,
    });
    at += Math.ceil((40 + rest.byteLength) / 8) * 8;
  }
  return out;
}

export function serializeSnapshots(list: SnapshotInfo[]): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const s of list) {
    const id = enc.encode(s.id);
    const name = enc.encode(s.name);
    const extra = new Uint8Array(Math.max(16, s.extra.byteLength));
    extra.set(s.extra);
    const ev = new DataView(extra.buffer);
    ev.setBigUint64(0, BigInt(s.vmStateSize), false);
    if (s.diskSize !== null) ev.setBigUint64(8, BigInt(s.diskSize), false);
    const entry = new Uint8Array(Math.ceil((40 + extra.byteLength + id.byteLength + name.byteLength) / 8) * 8);
    const v = new DataView(entry.buffer);
    v.setBigUint64(0, BigInt(s.l1TableOffset), false);
    v.setUint32(8, s.l1Size, false);
    v.setUint16(12, id.byteLength, false);
    v.setUint16(14, name.byteLength, false);
    v.setUint32(16, s.dateSec, false);
    v.setUint32(20, s.dateNsec, false);
    v.setBigUint64(24, BigInt(s.vmClockNsec), false);
    v.setUint32(32, Math.min(s.vmStateSize, 0xffffffff), false);
    v.setUint32(36, extra.byteLength, false);
    entry.set(extra, 40);
    entry.set(id, 40 + extra.byteLength);
    entry.set(name, 40 + extra.byteLength + id.byteLength);
    parts.push(entry);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Host clusters reachable from an L1 table: each L2 table, and each cluster its entries use. */
export async function referencedClusters(image: Qcow2Metadata, l1: Uint8Array): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < l1.byteLength / 8; i++) {
    const l2 = l1Offset(getEntry(l1, i));
    if (l2 === 0) continue;
    out.push(l2 / image.clusterSize);
    const table = await image.loadL2(l2);
    for (let j = 0; j < image.l2Entries; j++) {
      out.push(...image.releasedClusters(decodeL2(getEntry(table, j), image.clusterBits, image.header.version)));
    }
  }
  return out;
}

async function readL1(image: Qcow2Metadata, offset: number, size: number): Promise<Uint8Array> {
  if (offset % image.clusterSize !== 0 || size * 8 > 32 * 1024 * 1024) throw new Qcow2Error(`${image.path}: corrupt snapshot L1 table`);
  const l1 = new Uint8Array(size * 8);
  await image.file.readAt(offset, l1);
  return l1;
}

async function writeNewArea(image: Qcow2Metadata, data: Uint8Array): Promise<number> {
  const clusters = Math.max(1, Math.ceil(data.byteLength / image.clusterSize));
  const offset = await image.refcounts.allocate(clusters);
  await image.file.writeAt(offset, data);
  return offset;
}

/** Rewrites the snapshot table at a new place, switches the header to it, frees the old one. */
async function replaceSnapshotTable(image: Qcow2Metadata, list: SnapshotInfo[]): Promise<void> {
  const h = image.header;
  const oldOffset = h.snapshotsOffset;
  const oldBytes = serializeSnapshots(await readSnapshots(image)).byteLength;
  const bytes = serializeSnapshots(list);
  const offset = list.length > 0 ? await writeNewArea(image, bytes) : 0;
  await image.refcounts.writeBack();
  await image.barrier();
  const field = new Uint8Array(12);
  const v = new DataView(field.buffer);
  v.setUint32(0, list.length, false);
  v.setBigUint64(4, BigInt(offset), false);
  await image.file.writeAt(HDR_SNAPSHOTS, field);
  h.nbSnapshots = list.length;
  h.snapshotsOffset = offset;
  if (oldOffset !== 0 && oldBytes > 0) {
    const clusters = Math.ceil(oldBytes / image.clusterSize);
    await image.release(Array.from({ length: clusters }, (_, i) => oldOffset / image.clusterSize + i));
  } else await image.barrier();
}

/**
 * Sets bit 63 of every active L1/L2 entry exactly when the cluster's refcount is 1 (needed after a
 * snapshot changes refcounts; the spec only keeps these bits accurate in the active tables).
 */
export async function fixCopiedFlags(image: Qcow2Metadata): Promise<number> {
  let changed = 0;
  for (let i = 0; i < image.l1Size; i++) {
    const e = getEntry(image.l1, i);
    const l2 = l1Offset(e);
    if (l2 === 0) continue;
    const want = (await image.refcounts.get(l2 / image.clusterSize)) === 1;
    if (((e & FLAG_COPIED) !== 0n) !== want) {
      image.setL1(i, want ? e | FLAG_COPIED : e & ~FLAG_COPIED);
      changed++;
    }
    const table = await image.loadL2(l2);
    for (let j = 0; j < image.l2Entries; j++) {
      const entry = getEntry(table, j);
      const m = decodeL2(entry, image.clusterBits, image.header.version);
      if (m.kind !== 'data' && !(m.kind === 'zero' && m.hostOffset !== 0)) continue;
      const one = (await image.refcounts.get(m.hostOffset / image.clusterSize)) === 1;
      if (one !== m.copied) {
        setEntry(table, j, one ? entry | FLAG_COPIED : entry & ~FLAG_COPIED);
        image.markL2Dirty(l2);
        changed++;
      }
    }
  }
  await image.writeBackTables();
  return changed;
}

function findSnapshot(list: SnapshotInfo[], key: string): number {
  const byId = list.findIndex((s) => s.id === key);
  return byId >= 0 ? byId : list.findIndex((s) => s.name === key);
}

export async function createSnapshot(image: Qcow2Metadata, name: string, now = Date.now()): Promise<SnapshotInfo> {
  if (image.readOnly) throw new Qcow2Error(`${image.path}: image is open read-only`);
  if (name.length === 0 || new TextEncoder().encode(name).byteLength > 65535) throw new Qcow2Error('snapshot name must be 1 to 65535 bytes');
  return image.lock.exclusive(async () => {
    await image.beforeFirstWrite();
    // The snapshot's L1 copy names the active L2 tables: cached changes must be in the file first.
    await image.barrier();
    const list = await readSnapshots(image);
    if (list.some((s) => s.name === name)) throw new Qcow2Error(`${image.path}: a snapshot named "${name}" already exists`);
    // Every cluster the active L1 reaches gains a reference, durable before the snapshot names them.
    for (const c of await referencedClusters(image, image.l1)) await image.refcounts.adjust(c, 1);
    const copy = image.l1.slice();
    for (let i = 0; i < copy.byteLength / 8; i++) setEntry(copy, i, getEntry(copy, i) & ~FLAG_COPIED);
    const l1TableOffset = await writeNewArea(image, copy);
    await image.refcounts.writeBack();
    await image.barrier();
    await fixCopiedFlags(image);
    const maxId = list.reduce((m, s) => Math.max(m, Number.parseInt(s.id, 10) || 0), 0);
    const info: SnapshotInfo = {
      id: String(maxId + 1), name, l1TableOffset, l1Size: image.l1Size,
      dateSec: Math.floor(now / 1000), dateNsec: (now % 1000) * 1e6, vmClockNsec: 0, vmStateSize: 0,
      diskSize: image.size, extra: new Uint8Array(16),
    };
    await replaceSnapshotTable(image, [...list, info]);
    await image.barrier();
    return info;
  });
}

export async function applySnapshot(image: Qcow2Metadata, key: string): Promise<void> {
  if (image.readOnly) throw new Qcow2Error(`${image.path}: image is open read-only`);
  await image.lock.exclusive(async () => {
    await image.beforeFirstWrite();
    // The active tables are about to be replaced by the snapshot's: cached changes go out first.
    await image.barrier();
    const list = await readSnapshots(image);
    const snap = list[findSnapshot(list, key)];
    if (snap === undefined) throw new Qcow2Error(`${image.path}: no snapshot "${key}"`);
    if (snap.diskSize !== null && snap.diskSize !== image.size) {
      throw new Qcow2Error(`${image.path}: snapshot "${key}" has disk size ${snap.diskSize}, the image ${image.size}; resizing on apply is not supported`);
    }
    const snapL1 = await readL1(image, snap.l1TableOffset, snap.l1Size);
    for (const c of await referencedClusters(image, snapL1)) await image.refcounts.adjust(c, 1);
    await image.refcounts.writeBack();
    await image.barrier();
    const oldL1 = image.l1;
    const newL1 = new Uint8Array(Math.max(snap.l1Size, image.l1Size) * 8);
    newL1.set(snapL1);
    if (newL1.byteLength === oldL1.byteLength) {
      await image.file.writeAt(image.header.l1TableOffset, newL1);
      image.replaceL1(newL1, image.header.l1TableOffset);
    } else {
      const offset = await writeNewArea(image, newL1);
      await image.refcounts.writeBack();
      await image.barrier();
      const field = new Uint8Array(12);
      new DataView(field.buffer).setUint32(0, newL1.byteLength / 8, false);
      new DataView(field.buffer).setBigUint64(4, BigInt(offset), false);
      const oldOffset = image.header.l1TableOffset;
      await image.file.writeAt(HDR_L1, field);
      image.replaceL1(newL1, offset);
      const clusters = Math.ceil(oldL1.byteLength / image.clusterSize);
      await image.release(Array.from({ length: clusters }, (_, i) => oldOffset / image.clusterSize + i));
    }
    await image.release(await referencedClusters(image, oldL1));
    // Deferred decrements applied (COPIED flags follow refcounts) before the cache is dropped.
    await image.barrier();
    image.dropCaches();
    await fixCopiedFlags(image);
    await image.barrier();
  });
}

export async function deleteSnapshot(image: Qcow2Metadata, key: string): Promise<void> {
  if (image.readOnly) throw new Qcow2Error(`${image.path}: image is open read-only`);
  await image.lock.exclusive(async () => {
    await image.beforeFirstWrite();
    await image.barrier();
    const list = await readSnapshots(image);
    const index = findSnapshot(list, key);
    const snap = list[index];
    if (snap === undefined) throw new Qcow2Error(`${image.path}: no snapshot "${key}"`);
    const snapL1 = await readL1(image, snap.l1TableOffset, snap.l1Size);
    const reachable = await referencedClusters(image, snapL1);
    await replaceSnapshotTable(image, list.filter((_, i) => i !== index));
    const l1Clusters = Math.ceil((snap.l1Size * 8) / image.clusterSize);
    const l1Own = Array.from({ length: l1Clusters }, (_, i) => snap.l1TableOffset / image.clusterSize + i);
    await image.release([...reachable, ...(snap.l1Size > 0 ? l1Own : [])]);
    // Decrements applied (COPIED flags follow refcounts); freed L2 tables may be reused for
    // anything, so their cached copies are forgotten.
    await image.barrier();
    image.dropCaches();
    await fixCopiedFlags(image);
    await image.barrier();
  });
}

export async function listSnapshots(image: Qcow2Metadata): Promise<SnapshotInfo[]> {
  return image.lock.shared(() => readSnapshots(image));
}
