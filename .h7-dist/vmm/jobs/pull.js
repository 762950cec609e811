import { layersOf } from '../../img/chain.js';
import { copyUp, pathOf, swapBacking, writeBackingName } from '../checkpoints/merge.js';
import { JobCancelled } from './job.js';
export async function runPull(job, plan) {
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
    if (!complete)
        throw new JobCancelled();
    await writeBackingName(top, base === null ? null : pathOf(base), base?.format ?? null);
    await swapBacking(top, base, base);
    for (const p of dropped)
        await disk.releaseBackingLock(p);
}
//# sourceMappingURL=pull.js.map