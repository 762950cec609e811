/**
 * block-pull: copies into the guest's active image everything its backing chain provides above
 * `base` (or the whole chain), then points the image at `base` (or at nothing) and drops the
 * layers in between from the live chain. Copy-up happens cluster by cluster under the image's
 * lock (merge.ts copyUp), so guest writes are never overwritten by older backing data.
 */
import type { BlockBackend } from '../../block/backend.js';
import type { Qcow2Image } from '../../block/qcow2/image.js';
import type { Disk } from '../disks.js';
import { copyUp, swapBacking, writeBackingName } from '../../block/chain/merge.js';
import { layersOf, pathOf } from '../../block/chain/walk.js';
import { JobCancelled, type BlockJob } from './job.js';

export interface PullPlan {
  disk: Disk;
  top: Qcow2Image;
  /** The layer that stays as backing file (null: pull everything). */
  base: BlockBackend | null;
}

export async function runPull(job: BlockJob, plan: PullPlan): Promise<void> {
  const { disk, top, base } = plan;
  const layers = layersOf(top);
  const dropped = layers.slice(1, base === null ? layers.length : layers.indexOf(base)).map(pathOf);
  let accounted = 0;
  const complete = await copyUp(top, base, {
    progress: (done, total) => job.progress(done, total),
    cancelled: () => job.cancelled,
    // The rate limit applies to the range examined (what a pull reads), counted per step.
    throttle: async () => {
      const step = job.info.done - accounted;
      accounted = job.info.done;
      await job.copiedBytes(step);
    },
  });
  if (!complete) throw new JobCancelled();
  await writeBackingName(top, base === null ? null : pathOf(base), base?.format ?? null);
  await swapBacking(top, base, base);
  for (const p of dropped) await disk.releaseBackingLock(p);
}
