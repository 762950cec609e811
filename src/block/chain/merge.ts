/**
 * Chain surgery shared by snapshot-delete, block-pull and block-commit: copying backing data up
 * into an image without ever overwriting what the guest wrote, pointing an image at another
 * backing file, and splicing layers out of a live chain.
 *
 * Copy-up is done per cluster under the target image's exclusive lock, which guest writes also
 * take: a cluster is copied only if the target still does not have it when the lock is held, so
 * a guest write that lands first wins and the copy never replaces it. Copying the visible content
 * into an image never changes what that image shows, so a crash at any point leaves every image
 * readable with its content unchanged.
 */
import { basename, dirname, resolve } from 'node:path';
import { BlockError, type BlockBackend } from '../backend.js';
import { writeBackingName as writeBackingHeader } from '../qcow2/backing-name.js';
import { Qcow2Image } from '../qcow2/image.js';
import { chainStatus, layersOf } from './walk.js';

/** Bytes examined per step; also the unit of progress and of cancellation. */
export const MERGE_CHUNK = 4 * 1024 * 1024;

export interface MergeControl {
  /** Called after each step with bytes examined so far and the total. */
  progress?: (done: number, total: number) => void;
  /** Checked between steps: true stops the copy (what was copied stays, harmlessly). */
  cancelled?: () => boolean;
  /** Optional pause between steps (rate limiting; tests use it to widen the job's window). */
  throttle?: () => Promise<void>;
}

/** The name to store in an overlay for `backingPath`: its base name when both share a folder. */
export function backingNameFor(overlayPath: string, backingPath: string): string {
  const o = resolve(overlayPath);
  const b = resolve(backingPath);
  return dirname(o) === dirname(b) ? basename(b) : b;
}

/**
 * Copies into `top` every cluster that a layer between `top` (exclusive) and `stopAt`
 * (exclusive; null = the whole chain) provides and `top` lacks. Returns false when cancelled.
 */
export async function copyUp(top: Qcow2Image, stopAt: BlockBackend | null, control: MergeControl = {}): Promise<boolean> {
  const below = top.backing;
  if (below === null) return true;
  const layers = layersOf(below);
  const limit = stopAt === null ? layers.length : layers.indexOf(stopAt);
  if (limit < 0) throw new BlockError(`${stopAt?.path ?? 'the base'} is not below ${top.path} in its backing chain`);
  const cs = top.clusterSize;
  const end = Math.min(top.size, below.size);
  const buffer = new Uint8Array(cs);
  for (let at = 0; at < end;) {
    if (control.cancelled?.()) return false;
    const e = await chainStatus(below, at, Math.min(MERGE_CHUNK, end - at));
    if (e.present && e.depth < limit) {
      const first = Math.floor(e.start / cs);
      const last = Math.ceil((e.start + e.length) / cs);
      for (let c = first; c < last; c++) {
        // A backing layer can report status in units smaller than top's cluster (a raw file's
        // holes are 4 KiB, a qcow2 backing may have smaller clusters): a cluster is a zero
        // cluster only when this zero extent covers all of it, else its data is copied.
        const whole = e.start <= c * cs && e.start + e.length >= Math.min((c + 1) * cs, top.size);
        await copyClusterUp(top, c, e.zero && whole, buffer);
      }
    }
    at += e.length;
    control.progress?.(at, end);
    await control.throttle?.();
  }
  control.progress?.(end, end);
  return true;
}

async function copyClusterUp(top: Qcow2Image, cluster: number, zero: boolean, buffer: Uint8Array): Promise<void> {
  const cs = top.clusterSize;
  const offset = cluster * cs;
  const length = Math.min(cs, top.size - offset);
  if (length <= 0) return;
  await top.lock.exclusive(async () => {
    // Re-checked under the lock: a guest write that got here first must not be overwritten.
    if ((await top.meta.lookup(cluster)).kind !== 'unallocated') return;
    if (zero && top.meta.header.version === 3) {
      await top.zeroUnlocked(offset, length, 'zero');
      return;
    }
    const part = buffer.subarray(0, length);
    await top.backing!.read(offset, part);
    await top.writeUnlocked(offset, part);
  });
}

/** Rewrites `top`'s header to name `backingPath` (null: no backing file); in-memory chain untouched. */
export async function writeBackingName(top: Qcow2Image, backingPath: string | null, backingFormat: string | null): Promise<void> {
  await writeBackingHeader(top.meta, backingPath === null ? null : backingNameFor(top.path, backingPath), backingFormat);
}

/**
 * Makes `replacement` the backing of `parent` in memory (after the headers say so) and closes the
 * layers it replaces, except `keep` and what is below it. Readers through `parent` hold its shared
 * lock, so none is inside the replaced layers when they close.
 */
export async function swapBacking(parent: Qcow2Image, replacement: BlockBackend | null, keep: BlockBackend | null): Promise<void> {
  const head = await parent.lock.exclusive(async () => {
    const was = parent.backing;
    parent.backing = replacement;
    return was;
  });
  if (head === null || head === keep) return;
  // Unlink `keep` from the replaced layers before closing them: closing a layer closes its backing.
  let layer: BlockBackend | null = head;
  while (layer instanceof Qcow2Image && layer.backing !== keep && layer.backing !== null) layer = layer.backing;
  if (layer instanceof Qcow2Image && layer.backing === keep) layer.backing = null;
  await head.close();
}
