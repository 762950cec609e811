import type { BlockBackend } from '../block/backend.js';
import { createQcow2 } from '../block/qcow2/create.js';
import { Qcow2Image } from '../block/qcow2/image.js';
import type { ImageFormat } from '../block/backend.js';
import { openImage } from '../block/open.js';
import { RawBackend } from '../block/raw.js';
import { ConfigError } from '../errors.js';
import { parseSize } from '../util/size.js';
import { forEachExtent } from '../block/chain/walk.js';
import { isAllZero } from './zeros.js';
import { Progress } from './progress.js';
import { WriteBehind } from './write-behind.js';

const CHUNK = 8 * 1024 * 1024;

export interface ConvertRequest {
  input: string;
  inputFormat: ImageFormat | null;
  output: string;
  outputFormat: ImageFormat;
  options: Record<string, string>;
  progress: boolean;
  /** -c: store clusters deflate-compressed (qcow2 output only). */
  compress: boolean;
}

/** Writes the `grain`-sized pieces of `data` that are not all zero, neighbours merged into one request. */
async function writeNonZero(out: BlockBackend, offset: number, data: Uint8Array, grain: number): Promise<void> {
  let runStart = -1;
  for (let at = 0; at < data.byteLength; at += grain) {
    const end = Math.min(data.byteLength, at + grain);
    const keep = !isAllZero(data.subarray(at, end));
    if (keep && runStart < 0) runStart = at;
    if (!keep && runStart >= 0) {
      await out.write(offset + runStart, data.subarray(runStart, at));
      runStart = -1;
    }
  }
  if (runStart >= 0) await out.write(offset + runStart, data.subarray(runStart));
}

/**
 * -c: every target cluster that holds data in the source and is not all zeros is written
 * compressed. Source extents need not line up with target clusters (other cluster sizes, raw
 * sources), so each extent is widened to whole target clusters and each cluster done once.
 */
async function copyCompressed(source: BlockBackend, out: Qcow2Image, progress: Progress): Promise<void> {
  const cs = out.clusterSize;
  const cluster = new Uint8Array(cs);
  let done = 0; // every target cluster below this byte is written (or all zeros)
  await forEachExtent(source, CHUNK, async (e) => {
    progress.update(e.start, source.size);
    if (!e.present || e.zero) return;
    const end = Math.min(source.size, Math.ceil((e.start + e.length) / cs) * cs);
    for (let at = Math.max(done, Math.floor(e.start / cs) * cs); at < end; at += cs) {
      const part = cluster.subarray(0, Math.min(cs, source.size - at));
      await source.read(at, part);
      if (!isAllZero(part)) await out.writeCompressed(at, part);
    }
    done = Math.max(done, end);
  });
}

/**
 * Copies the guest-visible content of IN (through its backing chain) into a new OUT: regions that
 * are unallocated or zero, and chunks that read as zeros, are skipped (a sparse raw, unallocated
 * qcow2 clusters).
 */
export async function convertImage(req: ConvertRequest): Promise<void> {
  const source = await openImage(req.input, { readOnly: true, format: req.inputFormat });
  let target: BlockBackend | null = null;
  try {
    if (req.outputFormat === 'raw') {
      if (Object.keys(req.options).length > 0) throw new ConfigError('-o options need -O qcow2');
      if (req.compress) throw new ConfigError('-c (compressed clusters) needs -O qcow2');
      target = await RawBackend.create(req.output, source.size);
    } else {
      for (const key of Object.keys(req.options)) {
        if (!['cluster_size', 'refcount_bits', 'compat'].includes(key)) throw new ConfigError(`-o ${key}: unsupported option for convert`);
      }
      const compat = req.options['compat'];
      await createQcow2(req.output, {
        size: source.size,
        clusterSize: req.options['cluster_size'] ? parseSize(req.options['cluster_size'], 'cluster_size') : undefined,
        refcountBits: req.options['refcount_bits'] ? parseSize(req.options['refcount_bits'], 'refcount_bits') : undefined,
        compat: compat === '0.10' || compat === 'v2' ? '0.10' : '1.1',
      });
      // A half-written convert output is worthless anyway: no barriers until the final flush.
      target = await Qcow2Image.open(req.output, { readOnly: false, durable: false });
    }
    const out = target;
    const progress = new Progress(req.progress);
    if (req.compress) {
      await copyCompressed(source, out as Qcow2Image, progress);
      progress.finish();
      return;
    }
    const grain = out instanceof Qcow2Image ? out.clusterSize : 4096;
    const chunk = Math.max(CHUNK, grain);
    const copier = new WriteBehind(chunk);
    await forEachExtent(source, chunk, async (e) => {
      progress.update(e.start, source.size);
      if (!e.present || e.zero) return;
      const data = copier.buffer(e.length);
      await source.read(e.start, data);
      await copier.submit(() => writeNonZero(out, e.start, data, grain));
    });
    await copier.drain();
    // No fdatasync at the end: qemu-img convert's default output cache mode is "unsafe" too.
    progress.finish();
  } finally {
    await target?.close();
    await source.close();
  }
}
