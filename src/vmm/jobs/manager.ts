/**
 * The VMM's block jobs: validates a block-commit or block-pull request against the disk's live
 * chain, takes the locks it needs, then runs the job in the background (the guest keeps running)
 * and reports progress (`list()`), events (block-job-started/-completed/-failed/-cancelled) and
 * cancellation. One job per disk at a time; snapshot operations wait for jobs to end.
 */
import { resolve } from 'node:path';
import type { BlockBackend } from '../../block/backend.js';
import { Qcow2Image } from '../../block/qcow2/image.js';
import { ConfigError } from '../../errors.js';
import { log } from '../../util/log.js';
import { diskById, type Disk } from '../disks.js';
import { ConflictError, InvalidStateError, NoVmError } from '../errors.js';
import type { Vm } from '../vm.js';
import { lockedHandle } from '../../block/chain/lock.js';
import { layersOf, pathOf } from '../../block/chain/walk.js';
import { runCommit } from './commit.js';
import { BlockJob, JobCancelled } from './job.js';
import { runPull } from './pull.js';
import type { BlockCommitRequest, BlockJobInfo, BlockPullRequest } from './types.js';

export interface JobHost {
  vm(): Vm | undefined;
  emit(event: string, properties: Record<string, unknown>): void;
  /** Images a named snapshot froze: a commit must never write into them. */
  protectedImages?(): Promise<Set<string>>;
}

const KEEP_FINISHED = 16;

export class BlockJobManager {
  private readonly jobs: BlockJob[] = [];
  private nextId = 1;

  constructor(private readonly host: JobHost) {}

  list(): BlockJobInfo[] {
    return this.jobs.map((j) => ({ ...j.info }));
  }

  private running(): BlockJob[] {
    return this.jobs.filter((j) => j.info.state === 'running' || j.info.state === 'pivoting');
  }

  refuseWhileRunning(what: string): void {
    const r = this.running();
    if (r.length > 0) throw new ConflictError(`cannot ${what} while block job ${r.map((j) => `${j.info.id} (${j.info.type} of disk ${j.info.disk})`).join(', ')} runs; wait for it or cancel it (jobs --cancel ID)`);
  }

  private diskOf(id: string): Disk {
    const vm = this.host.vm();
    if (vm === undefined || vm.state === 'Shutdown') throw new NoVmError();
    if (vm.state !== 'Running' && vm.state !== 'Paused') throw new InvalidStateError(`cannot start a block job on a VM that is ${vm.state}`);
    const d = diskById(vm.platform.disks, id);
    if (this.running().some((j) => j.info.disk === id)) throw new ConflictError(`disk "${id}" already has a block job running`);
    return d;
  }

  private layerIndex(layers: BlockBackend[], path: string, what: string): number {
    const i = layers.findIndex((l) => pathOf(l) === resolve(path));
    if (i < 0) throw new ConfigError(`${what} ${path} is not in the disk's chain (${layers.map(pathOf).join(' → ')})`);
    return i;
  }

  private rateOf(v: number | undefined): number {
    if (v === undefined) return 0;
    if (!Number.isSafeInteger(v) || v < 0) throw new ConfigError(`rate_limit: ${v} must be a non-negative integer (bytes per second)`);
    return v;
  }

  async startCommit(req: BlockCommitRequest): Promise<BlockJobInfo> {
    const disk = this.diskOf(req.disk);
    const rate = this.rateOf(req.rate_limit);
    const layers = layersOf(disk.backend);
    const topIndex = req.top === undefined ? 0 : this.layerIndex(layers, req.top, 'top');
    const baseIndex = req.base === undefined ? topIndex + 1 : this.layerIndex(layers, req.base, 'base');
    if (baseIndex >= layers.length) throw new ConfigError(`${pathOf(layers[topIndex]!)} has no backing file to commit into`);
    if (baseIndex <= topIndex) throw new ConfigError(`base ${req.base} must be below top ${pathOf(layers[topIndex]!)} in the chain`);
    const top = layers[topIndex]!;
    const base = layers[baseIndex]!;
    if (top.size !== base.size) throw new ConfigError(`base ${pathOf(base)} is ${base.size} bytes but the disk is ${top.size}: resize it first`);
    const basePath = pathOf(base);
    if ((await this.host.protectedImages?.())?.has(basePath)) {
      throw new ConflictError(`${basePath} holds a named snapshot's disk state; committing into it would change that snapshot (delete the snapshot first)`);
    }
    // The VM's own read lock goes, then a write lock proves no other VM or tool reads base.
    await disk.releaseBackingLock(basePath);
    let baseLock;
    try {
      baseLock = await lockedHandle(basePath, 'write');
    } catch (e) {
      await disk.holdBackingLock(basePath, await lockedHandle(basePath, 'read'));
      throw e;
    }
    const parent = topIndex === 0 ? null : layers[topIndex - 1]!;
    const job = new BlockJob(`job${this.nextId++}`, 'commit', disk.config.id, pathOf(top), basePath, rate);
    this.launch(job, () => runCommit(job, {
      disk, top, parent: parent instanceof Qcow2Image ? parent : null, base, baseDepth: baseIndex - topIndex, baseLock,
    }));
    return { ...job.info };
  }

  async startPull(req: BlockPullRequest): Promise<BlockJobInfo> {
    const disk = this.diskOf(req.disk);
    const rate = this.rateOf(req.rate_limit);
    const top = disk.backend;
    if (!(top instanceof Qcow2Image) || top.backing === null) throw new ConfigError(`disk "${req.disk}" has no backing file to pull from`);
    const layers = layersOf(top);
    const base = req.base === undefined ? null : layers[this.layerIndex(layers, req.base, 'base')]!;
    if (base === top) throw new ConfigError('base must be below the active image');
    const job = new BlockJob(`job${this.nextId++}`, 'pull', disk.config.id, top.path, base === null ? null : pathOf(base), rate);
    this.launch(job, () => runPull(job, { disk, top, base }));
    return { ...job.info };
  }

  private launch(job: BlockJob, run: () => Promise<void>): void {
    this.jobs.push(job);
    const finished = this.jobs.filter((j) => j.info.finished !== undefined);
    for (const old of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.jobs.splice(this.jobs.indexOf(old), 1);
    this.host.emit('block-job-started', { ...job.info });
    job.done = run().then(
      () => {
        job.finish('completed');
        this.host.emit('block-job-completed', { ...job.info });
      },
      (e: unknown) => {
        if (e instanceof JobCancelled) {
          job.finish('cancelled');
          this.host.emit('block-job-cancelled', { ...job.info });
          return;
        }
        job.finish('failed', (e as Error).message);
        log.warn(`block job ${job.info.id} (${job.info.type} of disk ${job.info.disk}) failed: ${(e as Error).message}`);
        this.host.emit('block-job-failed', { ...job.info });
      },
    );
  }

  async cancel(id: string): Promise<void> {
    const job = this.jobs.find((j) => j.info.id === id);
    if (job === undefined) throw new ConfigError(`no block job "${id}" (jobs: ${this.jobs.map((j) => j.info.id).join(', ') || 'none'})`);
    if (job.info.finished !== undefined) throw new InvalidStateError(`block job ${id} already ended (${job.info.state})`);
    job.requestCancel();
    await job.done;
  }

  /** Cancels every running job and waits for them (before the VM closes). */
  async cancelAll(): Promise<void> {
    const r = this.running();
    for (const j of r) j.requestCancel();
    await Promise.all(r.map((j) => j.done));
  }
}
