import { realpath } from 'node:fs/promises';
import type { BlockBackend, ImageFormat } from './backend.js';
import { QCOW2_MAGIC } from './qcow2/format.js';
import { Qcow2Error } from './qcow2/errors.js';
import { HostFile } from './host-file.js';
import { Qcow2Image } from './qcow2/image.js';
import { RawBackend } from './raw.js';

export interface OpenImageOptions {
  readOnly: boolean;
  /** Forces a format instead of probing the magic (as `-f` does). */
  format?: ImageFormat | null;
  durable?: boolean;
  /**
   * Called before a backing file named inside an image is opened (`image` names `backing`); it
   * may throw to refuse (the VMM's backing_files=off). Absent: backing chains are followed.
   */
  beforeBacking?: (image: string, backing: string) => void;
}

const MAX_CHAIN_DEPTH = 64;

/** 'qcow2' when the file starts with the qcow2 magic, else 'raw'. */
export async function detectFormat(path: string): Promise<ImageFormat> {
  const file = await HostFile.open(path, false);
  try {
    const head = new Uint8Array(4);
    await file.readAt(0, head);
    return new DataView(head.buffer).getUint32(0, false) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  } finally {
    await file.close();
  }
}

function checkFormat(format: string | null | undefined): ImageFormat | null {
  if (format === undefined || format === null) return null;
  if (format !== 'raw' && format !== 'qcow2') throw new Qcow2Error(`unsupported image format "${format}" (tsvmm reads raw and qcow2)`, { feature: 'format' });
  return format;
}

/**
 * Opens a raw or qcow2 image with its whole backing chain (backing files read-only). Backing files
 * with a recorded format are opened as that format; others are probed. Loops and over-deep chains
 * are refused.
 */
export async function openImage(path: string, options: OpenImageOptions): Promise<BlockBackend> {
  const seen = new Set<string>();
  const openOne = async (p: string, format: ImageFormat | null, readOnly: boolean, depth: number): Promise<BlockBackend> => {
    if (depth > MAX_CHAIN_DEPTH) throw new Qcow2Error(`${path}: backing chain deeper than ${MAX_CHAIN_DEPTH} images`);
    let real: string;
    try {
      real = await realpath(p);
    } catch {
      throw new Qcow2Error(`cannot open ${p}: no such file${depth > 0 ? ' (backing file of the chain)' : ''}`, { path: p });
    }
    if (seen.has(real)) throw new Qcow2Error(`${p}: backing chain loops back to ${real}`);
    seen.add(real);
    const fmt = format ?? (await detectFormat(p));
    if (fmt === 'raw') return RawBackend.open(p, { readOnly });
    return Qcow2Image.open(p, {
      readOnly,
      durable: options.durable ?? true,
      openBacking: (bp, bf) => {
        options.beforeBacking?.(p, bp);
        return openOne(bp, checkFormat(bf), true, depth + 1);
      },
    });
  };
  return openOne(path, checkFormat(options.format), options.readOnly, 0);
}

/** The VM builder's entry point: a virtio-blk backend for a raw or qcow2 disk. */
export async function openDisk(path: string, options: Pick<OpenImageOptions, 'readOnly' | 'beforeBacking'> & { format?: ImageFormat }): Promise<BlockBackend> {
  return openImage(path, { ...options, format: options.format ?? null });
}
