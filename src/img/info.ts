import { dirname, isAbsolute, join } from 'node:path';
import type { BlockBackend } from '../block/backend.js';
import { AUTOCLEAR_BITMAPS, COMPAT_LAZY_REFCOUNTS, EXT_BITMAPS, INCOMPAT_CORRUPT, INCOMPAT_DIRTY } from '../block/qcow2/format.js';
import { HostFile } from '../block/host-file.js';
import { Qcow2Image } from '../block/qcow2/image.js';
import { listSnapshots } from '../block/qcow2/snapshots.js';
import { formatSnapshotTable, snapshotJson } from './snapshot.js';

/** `qemu-img info --output=json` for one image, with qemu-img's field names. */
export async function imageInfo(image: BlockBackend, filename: string): Promise<Record<string, unknown>> {
  const file = await HostFile.open(filename, false);
  const actualSize = await file.allocatedBytes();
  await file.close();
  const info: Record<string, unknown> = {
    'virtual-size': image.size,
    filename,
    format: image.format,
    'actual-size': actualSize,
    'dirty-flag': false,
  };
  if (!(image instanceof Qcow2Image)) return info;
  const h = image.meta.header;
  info['cluster-size'] = image.clusterSize;
  info['dirty-flag'] = (h.incompatible & INCOMPAT_DIRTY) !== 0n;
  if (h.backingFile !== null) {
    info['backing-filename'] = h.backingFile;
    info['full-backing-filename'] = isAbsolute(h.backingFile) ? h.backingFile : join(dirname(filename), h.backingFile);
    if (h.backingFormat !== null) info['backing-filename-format'] = h.backingFormat;
  }
  const snapshots = await listSnapshots(image.meta);
  if (snapshots.length > 0) info['snapshots'] = snapshots.map(snapshotJson);
  const data: Record<string, unknown> = {
    compat: h.version === 2 ? '0.10' : '1.1',
  };
  if (h.version === 3) {
    data['compression-type'] = h.compressionType === 0 ? 'zlib' : 'zstd';
    data['lazy-refcounts'] = (h.compatible & COMPAT_LAZY_REFCOUNTS) !== 0n;
    data['refcount-bits'] = 2 ** h.refcountOrder;
    data['corrupt'] = (h.incompatible & INCOMPAT_CORRUPT) !== 0n;
    data['extended-l2'] = false;
  } else {
    data['compression-type'] = 'zlib';
    data['refcount-bits'] = 16;
  }
  // Bitmaps whose autoclear bit is gone were invalidated by a writer that could not update them.
  if (h.extensions.some((e) => e.type === EXT_BITMAPS) && !(h.autoclear & AUTOCLEAR_BITMAPS)) data['bitmaps-inconsistent'] = true;
  info['format-specific'] = { type: 'qcow2', data };
  return info;
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${Number.isInteger(v) ? v : v.toPrecision(3)} ${units[u]}`;
}

/** The human-readable form `qemu-img info` prints. */
export function formatInfo(info: Record<string, unknown>): string {
  const lines = [
    `image: ${String(info['filename'])}`,
    `file format: ${String(info['format'])}`,
    `virtual size: ${human(info['virtual-size'] as number)} (${String(info['virtual-size'])} bytes)`,
    `disk size: ${human(info['actual-size'] as number)}`,
  ];
  if (info['cluster-size'] !== undefined) lines.push(`cluster_size: ${String(info['cluster-size'])}`);
  if (info['backing-filename'] !== undefined) lines.push(`backing file: ${String(info['backing-filename'])}`);
  if (info['backing-filename-format'] !== undefined) lines.push(`backing file format: ${String(info['backing-filename-format'])}`);
  if (Array.isArray(info['snapshots'])) lines.push(formatSnapshotTable(info['snapshots'] as Record<string, number | string>[]).trimEnd());
  const fs = info['format-specific'] as { data: Record<string, unknown> } | undefined;
  if (fs !== undefined) {
    lines.push('Format specific information:');
    for (const [k, v] of Object.entries(fs.data)) {
      if (k === 'bitmaps-inconsistent') lines.push('    bitmaps: inconsistent (the autoclear bit was cleared by a writer without bitmap support; QEMU ignores them)');
      else lines.push(`    ${k.replace(/-/g, ' ')}: ${String(v)}`);
    }
  }
  return lines.join('\n') + '\n';
}
