import { Qcow2Image, resolveBackingPath } from '../block/qcow2/image.js';
import { writeBackingName } from '../block/qcow2/backing-name.js';
import type { ImageFormat } from '../block/backend.js';
import { detectFormat, openImage } from '../block/open.js';
import { ConfigError } from '../errors.js';
import { Progress } from './progress.js';

export interface RebaseRequest {
  file: string;
  /** New backing file name as it will be stored ("" removes the backing file). */
  backing: string;
  backingFormat: ImageFormat | null;
  unsafe: boolean;
  progress: boolean;
}

/**
 * Points FILE at a new backing file. Safe mode first copies into FILE every unallocated range
 * where the old and new chains differ, so the guest-visible content is unchanged; -u only rewrites
 * the header.
 */
export async function rebaseImage(req: RebaseRequest): Promise<void> {
  const top = await openImage(req.file, { readOnly: false });
  if (!(top instanceof Qcow2Image)) {
    await top.close();
    throw new ConfigError(`${req.file}: only qcow2 images have a backing file`);
  }
  try {
    const newPath = req.backing === '' ? null : resolveBackingPath(top.path, req.backing);
    let format = req.backingFormat;
    if (newPath !== null && format === null) {
      if (!req.unsafe) format = await detectFormat(newPath);
      else throw new ConfigError('rebase -u needs the new backing format (-F raw or -F qcow2)');
    }
    if (!req.unsafe) {
      const fresh = newPath === null ? null : await openImage(newPath, { readOnly: true, format });
      try {
        await copyDifferences(top, fresh, new Progress(req.progress));
      } finally {
        await fresh?.close();
      }
    }
    // The same header rewrite a live block-pull or snapshot-delete does (qcow2/backing-name.ts).
    await writeBackingName(top.meta, newPath === null ? null : req.backing, newPath === null ? null : format);
  } finally {
    await top.close();
  }
}

async function copyDifferences(top: Qcow2Image, fresh: { size: number; read(o: number, b: Uint8Array): Promise<void> } | null, progress: Progress): Promise<void> {
  const chunk = Math.max(top.clusterSize, 1024 * 1024);
  const oldData = new Uint8Array(chunk);
  const newData = new Uint8Array(chunk);
  for (let at = 0; at < top.size;) {
    progress.update(at, top.size);
    const st = await top.blockStatus(at, chunk);
    if (st.kind === 'unallocated') {
      const a = oldData.subarray(0, st.length);
      const b = newData.subarray(0, st.length);
      await readOrZero(top.backing, at, a);
      await readOrZero(fresh, at, b);
      if (Buffer.compare(a, b) !== 0) await top.write(at, a);
    }
    at += st.length;
  }
  progress.finish();
}

async function readOrZero(layer: { size: number; read(o: number, b: Uint8Array): Promise<void> } | null, offset: number, into: Uint8Array): Promise<void> {
  const n = layer === null ? 0 : Math.max(0, Math.min(into.byteLength, layer.size - offset));
  if (n > 0) await layer!.read(offset, into.subarray(0, n));
  into.fill(0, n);
}
