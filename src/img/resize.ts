import type { ImageFormat } from '../block/backend.js';
import { openImage } from '../block/open.js';
import { ConfigError } from '../errors.js';
import { parseSize } from '../util/size.js';

export interface ResizeRequest {
  file: string;
  format: ImageFormat | null;
  /** qemu-img's syntax: "20G" sets the size, "+5G" / "-1G" change it. */
  size: string;
  /** Allow making the image smaller (its tail is lost), as qemu-img's --shrink. */
  shrink: boolean;
}

/** The new size in bytes from a qemu-img size argument and the current size. */
export function targetSize(spec: string, current: number): number {
  const sign = spec.startsWith('+') ? 1 : spec.startsWith('-') ? -1 : 0;
  const amount = parseSize(sign === 0 ? spec : spec.slice(1), 'size');
  const size = sign === 0 ? amount : current + sign * amount;
  if (size < 0) throw new ConfigError(`size: ${spec} would make the image smaller than nothing (it is ${current} bytes)`);
  return size;
}

/**
 * `qemu-img resize`: raw images grow or (with `shrink`) shrink by truncation; qcow2 images grow.
 * Shrinking a qcow2 image, or resizing one with internal snapshots (whose tables keep the old
 * size), is refused with a message that says so.
 */
export async function resizeImage(req: ResizeRequest): Promise<void> {
  const image = await openImage(req.file, { readOnly: false, format: req.format });
  try {
    const size = targetSize(req.size, image.size);
    if (size < image.size && !req.shrink) {
      throw new ConfigError(`${req.file}: ${size} bytes is smaller than the image (${image.size}); use --shrink to cut its tail off`);
    }
    if (size < image.size && image.format === 'qcow2') throw new ConfigError(`${req.file}: tsvmm-img cannot shrink qcow2 images (convert to a smaller raw image instead)`);
    await image.resize(size);
  } finally {
    await image.close();
  }
}
