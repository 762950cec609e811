import type { BlockBackend } from '../block/backend.js';
import { chainStatus } from '../block/chain/walk.js';
import { isAllZero } from './zeros.js';
import { Progress } from './progress.js';

const CHUNK = 2 * 1024 * 1024;

export interface CompareResult {
  identical: boolean;
  /** First differing guest offset (when not identical). */
  mismatchAt: number | null;
  sizeMismatch: boolean;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let lo = 0; lo < a.byteLength; lo += 4096) {
    const hi = Math.min(a.byteLength, lo + 4096);
    if (Buffer.compare(a.subarray(lo, hi), b.subarray(lo, hi)) === 0) continue;
    for (let i = lo; i < hi; i++) if (a[i] !== b[i]) return i;
  }
  return -1;
}

/**
 * Compares guest-visible content like qemu-img compare (non-strict): the part beyond the smaller
 * image must be zeros in the larger one. Regions both chains report as zeros are not read.
 */
export async function compareImages(a: BlockBackend, b: BlockBackend, progressOn: boolean): Promise<CompareResult> {
  const progress = new Progress(progressOn);
  const common = Math.min(a.size, b.size);
  const bufA = new Uint8Array(CHUNK);
  const bufB = new Uint8Array(CHUNK);
  for (let at = 0; at < common;) {
    progress.update(at, common);
    const sa = await chainStatus(a, at, CHUNK);
    const sb = await chainStatus(b, at, Math.min(CHUNK, sa.length));
    const n = Math.min(sa.length, sb.length);
    const zeroA = !sa.present || sa.zero;
    const zeroB = !sb.present || sb.zero;
    if (!(zeroA && zeroB)) {
      const pa = bufA.subarray(0, n);
      const pb = bufB.subarray(0, n);
      if (zeroA) pa.fill(0);
      else await a.read(at, pa);
      if (zeroB) pb.fill(0);
      else await b.read(at, pb);
      const d = firstDifference(pa, pb);
      // qemu-img reports the start of the first differing 512-byte sector.
      if (d >= 0) return { identical: false, mismatchAt: Math.floor((at + d) / 512) * 512, sizeMismatch: a.size !== b.size };
    }
    at += n;
  }
  const larger = a.size > b.size ? a : b;
  for (let at = common; at < larger.size; at += CHUNK) {
    const part = bufA.subarray(0, Math.min(CHUNK, larger.size - at));
    await larger.read(at, part);
    if (!isAllZero(part)) return { identical: false, mismatchAt: Math.floor((at + part.findIndex((x) => x !== 0)) / 512) * 512, sizeMismatch: true };
  }
  progress.finish();
  return { identical: true, mismatchAt: null, sizeMismatch: a.size !== b.size };
}
