/**
 * The VMM: owns at most one VM and implements the control-plane contract (controller.ts) for the
 * CLI and the HTTP API. Every state-changing operation runs one at a time; a request that arrives
 * while another is in progress is refused with ECONFLICT rather than queued, as the API promises.
 */
import { log } from '../util/log.js';
import type { VmConfig } from './config.js';
import type { ConsoleAttachment, ConsolePortName, VmCounters, VmInfo, VmmController, VmmEvent } from './controller.js';
import type { LiveSnapshotSummary, ResizeDiskRequest, RestoreRequest, SnapshotRequest } from './requests.js';
import type { ApiListen } from './api/server.js';
import { ConflictError, InvalidStateError, NoVmError } from './errors.js';
import type { VmEnd } from './exit-status.js';
import { prepareSpareVm, releaseSpareVm } from './spare-vm.js';
import { ConsolePort } from './console-ports.js';
import { VmBuilder } from './builder.js';
import { diskById } from './disks.js';
import type { Vm, VmHooks } from './vm.js';
import { prewarmVcpuWorkers, waitForVcpuWorkersLoaded } from './vcpu-thread.js';
import type { DiskSnapshotService } from './checkpoints/service.js';
import type {
  DiskSnapshotRequest, LastOperation, SnapshotCreateRequest, SnapshotListing, SnapshotListRequest, SnapshotNameRequest,
} from './checkpoints/types.js';
import type { BlockJobManager } from './jobs/manager.js';
import type { BlockCommitRequest, BlockJobInfo, BlockPullRequest, JobCancelRequest } from './jobs/types.js';

export const VERSION = '0.1.0';
/** vCPU worker threads an empty VMM keeps loaded for a warm restore or boot. */
const WARM_VCPU_WORKERS = 2;

export interface VmmOptions {
  /** Called once when the VM ends by itself or the VMM is asked to stop. */
  onVmEnd(end: VmEnd): void;
  /** Wire the process's stdin (and terminal size) to the port whose mode is Tty. */
  stdinIsConsole: boolean;
}

/** Event timestamps count from the VMM's start, as Cloud Hypervisor's event monitor does. */
const STARTED_NS = process.hrtime.bigint();
/**
 * The snapshot format code loads on first use: a VM booted from the command line may never need
 * it, and it is a sizeable share of start-up. An idle VMM loads it ahead of a warm restore.
 */
function loadPersist(): Promise<typeof import('./persist.js')> {
  return import('./persist.js');
}

function now(): VmmEvent['timestamp'] {
  const ns = process.hrtime.bigint() - STARTED_NS;
  return { secs: Number(ns / 1_000_000_000n), nanos: Number(ns % 1_000_000_000n) };
}

export class Vmm implements VmmController {
  private vm: Vm | undefined;
  /**
   * Where the VM config comes from: vm.create's body until a VM is built from it, then that VM
   * (whose config follows its disks onto new images), until vm.create replaces it.
   */
  private configSource: { readonly config: VmConfig } | undefined;
  private busy: string | undefined;
  private readonly listeners = new Set<(e: VmmEvent) => void>();
  /** The host ends of the serial port and the virtio console. */
  private readonly ports = {
    serial: new ConsolePort('serial', (b) => this.vm?.platform.serialInput(b)),
    console: new ConsolePort('console', (b) => this.vm?.platform.consoleInput(b)),
  };
  /** The port stdin is wired to (the one in Tty mode), while it is. */
  private stdinPort: ConsolePortName | undefined;
  private api: { close(): Promise<void> } | undefined;
  private endReported = false;
  /**
   * Disk snapshots and named checkpoints (src/vmm/checkpoints/) and background block jobs
   * (src/vmm/jobs/), loaded on first use: a VM booted from the command line without an API
   * socket never needs them, and they are a noticeable share of start-up.
   */
  private diskOps: { snapshots: DiskSnapshotService; jobs: BlockJobManager } | undefined;
  /** The live snapshot in progress, if any: teardown aborts it and waits for it to let go of guest RAM. */
  private liveSnapshot: { abort: AbortController; settled: Promise<void> } | undefined;

  private async loadDiskOps(): Promise<{ snapshots: DiskSnapshotService; jobs: BlockJobManager }> {
    if (this.diskOps === undefined) {
      const [{ DiskSnapshotService }, { BlockJobManager }] = await Promise.all([import('./checkpoints/service.js'), import('./jobs/manager.js')]);
      if (this.diskOps === undefined) {
        const snapshots = new DiskSnapshotService({
          vm: () => this.vm,
          emit: (event, properties) => this.emit('vm', event, properties),
          closeVm: async () => {
            if (this.vm !== undefined && this.vm.state !== 'Shutdown') await this.teardown(this.vm);
          },
          adoptVm: (vm) => {
            this.vm = vm;
            this.configSource = vm;
            this.endReported = false;
            this.attachStdin(vm);
          },
          hooksFor: (config) => this.hooks(config),
        });
        const jobs = new BlockJobManager({
          vm: () => this.vm,
          emit: (event, properties) => this.emit('device', event, properties),
          protectedImages: () => snapshots.protectedImages(),
        });
        this.diskOps = { snapshots, jobs };
      }
    }
    return this.diskOps;
  }

  /** The disk-operation services; the API loads them before it serves (serveApi). */
  private get ops(): { snapshots: DiskSnapshotService; jobs: BlockJobManager } {
    if (this.diskOps === undefined) throw new ConflictError('disk snapshot support is still loading; retry in a moment');
    return this.diskOps;
  }

  constructor(private readonly options: VmmOptions) {}

  // ---- events -------------------------------------------------------------------------------

  private emit(source: VmmEvent['source'], event: string, properties: Record<string, unknown> | null = null): void {
    const e: VmmEvent = { timestamp: now(), source, event, properties };
    log.info(`${source} ${event}${properties === null ? '' : ` ${JSON.stringify(properties)}`}`);
    for (const l of this.listeners) {
      try { l(e); } catch (err) { log.warn(`event listener failed: ${(err as Error).message}`); }
    }
  }

  subscribe(listener: (e: VmmEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- serialisation of state changes -------------------------------------------------------

  private async exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy !== undefined) throw new ConflictError(`cannot ${what} while ${this.busy} is in progress; retry when it ends`);
    this.busy = what;
    try {
      return await fn();
    } finally {
      this.busy = undefined;
    }
  }

  private requireVm(): Vm {
    if (this.vm === undefined) throw new NoVmError();
    return this.vm;
  }

  // ---- console ports ------------------------------------------------------------------------

  /** Listens on the ports' `socket=PATH` sockets the config names, before a boot or a resume. */
  private async openPorts(config: VmConfig): Promise<void> {
    await this.ports.serial.open(config);
    await this.ports.console.open(config);
  }

  /**
   * Feeds stdin to the port in Tty mode, as Cloud Hypervisor does: a terminal in raw mode (the
   * guest does its own line editing and echo), and a pipe or file as it comes, so programs
   * (tests, expect-style scripts) can drive a guest shell through tsvmm's stdio. On a terminal,
   * the virtio console also follows its size.
   */
  private attachStdin(vm: Vm): void {
    if (!this.options.stdinIsConsole || this.stdinPort !== undefined) return;
    const port: ConsolePortName | undefined = vm.config.serial.mode === 'Tty' ? 'serial' : vm.config.console.mode === 'Tty' ? 'console' : undefined;
    if (port === undefined) return;
    this.stdinPort = port;
    if (process.stdin.isTTY) process.stdin.setRawMode(true);
    process.stdin.on('data', this.onStdin);
    // A closed stdin (EOF, or /dev/null) only means no more input; the VM runs on.
    process.stdin.on('error', (e) => log.warn(`stdin: ${e.message}`));
    process.stdin.resume();
    if (port === 'console' && process.stdout.isTTY) {
      this.onTerminalResize();
      process.stdout.on('resize', this.onTerminalResize);
    }
  }

  private readonly onStdin = (chunk: Buffer): void => {
    if (this.stdinPort === 'serial') this.vm?.platform.serialInput(chunk);
    else if (this.stdinPort === 'console') this.vm?.platform.consoleInput(chunk);
  };

  private readonly onTerminalResize = (): void => {
    this.vm?.platform.resizeConsole(process.stdout.columns, process.stdout.rows);
  };

  private detachStdin(): void {
    if (this.stdinPort === undefined) return;
    this.stdinPort = undefined;
    if (process.stdin.isTTY) process.stdin.setRawMode(false);
    process.stdin.off('data', this.onStdin);
    process.stdout.off('resize', this.onTerminalResize);
    process.stdin.pause();
  }

  attachConsole(port?: ConsolePortName): ConsoleAttachment {
    const vm = this.requireVm();
    if (port !== undefined) return this.ports[port].attach(vm.config);
    if (this.ports.serial.attachable(vm.config)) return this.ports.serial.attach(vm.config);
    if (this.ports.console.attachable(vm.config)) return this.ports.console.attach(vm.config);
    throw new InvalidStateError('no console port is in socket mode: start the VM with --serial socket or --console socket to attach a console');
  }

  // ---- VmmController ------------------------------------------------------------------------

  ping(): ReturnType<VmmController['ping']> {
    return { build_version: VERSION, version: VERSION, pid: process.pid, features: ['kvm', 'virtio-blk', 'qcow2', 'snapshot'] };
  }

  info(): VmInfo {
    if (this.configSource === undefined) {
      // A restore in progress is not "no VM": say so, so clients know to retry.
      if (this.busy === 'vm.restore') throw new ConflictError('the VM is being restored; retry when vm.restore completes');
      throw new NoVmError();
    }
    const built = this.configSource.config;
    const config = { ...built, serial: this.ports.serial.reported(built), console: this.ports.console.reported(built) };
    const info: VmInfo = { config, state: this.vm?.state ?? 'Created', memory_actual_size: config.memory.size };
    if (this.vm !== undefined && this.vm.state !== 'Shutdown') info.device_tree = this.vm.platform.deviceTree();
    const jobs = this.diskOps?.jobs.list() ?? [];
    if (jobs.length > 0) info.block_jobs = jobs;
    return info;
  }

  counters(): VmCounters {
    return this.requireVm().counters();
  }

  private hooks(config: VmConfig): VmHooks {
    return {
      onEnd: (end: VmEnd) => { void this.end(end); },
      onSerialOutput: this.ports.serial.output(config),
      onConsoleOutput: this.ports.console.output(config),
    };
  }

  create(config: VmConfig): Promise<void> {
    return this.exclusive('vm.create', async () => {
      // After vm.shutdown the old configuration may be replaced; a live VM must be shut down first.
      if (this.vm !== undefined && this.vm.state !== 'Shutdown') throw new InvalidStateError(`a VM already exists and is ${this.vm.state}: shut it down (vm.shutdown) before creating another`);
      if (this.vm === undefined && this.configSource !== undefined) throw new InvalidStateError('a VM is already created: boot it (vm.boot), or shut it down before creating another');
      this.configSource = { config };
      this.emit('vm', 'created');
    });
  }

  boot(): Promise<void> {
    return this.exclusive('vm.boot', async () => {
      if (this.configSource === undefined) throw new NoVmError();
      if (this.vm !== undefined && this.vm.state !== 'Shutdown') throw new InvalidStateError(`cannot boot a VM that is ${this.vm.state}`);
      this.emit('vm', 'booting');
      const start = performance.now();
      const config = this.configSource.config;
      await this.openPorts(config);
      const vm = await VmBuilder.boot(config, this.hooks(config));
      this.vm = vm;
      this.configSource = vm;
      this.endReported = false;
      vm.start();
      this.attachStdin(vm);
      this.emit('vm', 'booted', { duration_ms: performance.now() - start });
    });
  }

  pause(): Promise<void> {
    return this.exclusive('vm.pause', async () => {
      const vm = this.requireVm();
      if (vm.state !== 'Running') throw new InvalidStateError(`cannot pause a VM that is ${vm.state}`);
      this.emit('vm', 'pausing');
      const start = performance.now();
      await vm.pause();
      this.emit('vm', 'paused', { duration_ms: performance.now() - start });
    });
  }

  resume(): Promise<void> {
    return this.exclusive('vm.resume', async () => {
      const vm = this.requireVm();
      if (vm.state !== 'Paused') throw new InvalidStateError(`cannot resume a VM that is ${vm.state}`);
      await this.resumeVm(vm);
    });
  }

  private async resumeVm(vm: Vm): Promise<void> {
    this.emit('vm', 'resuming');
    const start = performance.now();
    await vm.resume();
    this.emit('vm', 'resumed', { duration_ms: performance.now() - start });
  }

  shutdown(): Promise<void> {
    return this.exclusive('vm.shutdown', async () => {
      const vm = this.requireVm();
      if (vm.state === 'Shutdown') throw new InvalidStateError('the VM is already shut down: boot it (vm.boot) or restore a snapshot into it (vm.restore)');
      await this.teardown(vm);
      this.emit('vm', 'shutdown');
    });
  }

  delete(): Promise<void> {
    return this.exclusive('vm.delete', async () => {
      if (this.configSource === undefined) return;
      if (this.vm !== undefined && this.vm.state !== 'Shutdown') {
        await this.teardown(this.vm);
        this.emit('vm', 'shutdown');
      }
      this.vm = undefined;
      this.configSource = undefined;
      this.emit('vm', 'deleted');
    });
  }

  reboot(): Promise<void> {
    return this.exclusive('vm.reboot', async () => {
      const vm = this.requireVm();
      if (vm.state !== 'Running' && vm.state !== 'Paused') throw new InvalidStateError(`cannot reboot a VM that is ${vm.state}`);
      this.emit('vm', 'rebooting');
      await this.teardown(vm);
      const config = vm.config;
      const next = await VmBuilder.boot(config, this.hooks(config));
      this.vm = next;
      this.configSource = next;
      this.endReported = false;
      next.start();
      this.attachStdin(next);
      this.emit('vm', 'rebooted');
    });
  }

  powerButton(): Promise<void> {
    return this.exclusive('vm.power-button', async () => {
      const vm = this.requireVm();
      if (vm.state !== 'Running') throw new InvalidStateError(`cannot press the power button of a VM that is ${vm.state}`);
      vm.platform.pressPowerButton();
      this.emit('vm', 'power-button');
    });
  }

  snapshot(req: SnapshotRequest): Promise<LiveSnapshotSummary | undefined> {
    return this.exclusive('vm.snapshot', async () => {
      const vm = this.requireVm();
      const live = req.live === true && vm.state === 'Running';
      if (!live && vm.state !== 'Paused') {
        throw new InvalidStateError(`the VM must be paused to snapshot it (it is ${vm.state}): send vm.pause first, or ask for a live snapshot ("live": true)`);
      }
      this.emit('vm', 'snapshotting');
      const start = performance.now();
      const ops = req.disks === true ? await this.loadDiskOps() : undefined;
      ops?.jobs.refuseWhileRunning('take a checkpoint with disks');
      let result;
      if (live) {
        const abort = new AbortController();
        const signal = abort.signal;
        const running = ops !== undefined
          ? ops.snapshots.checkpoint(req.destination_url, { live: true, signal }).then((r) => {
            if (!('live' in r)) throw new Error('a live checkpoint reported no pause');
            return r;
          })
          : import('./live-snapshot.js').then(({ liveSnapshotVm }) => liveSnapshotVm(vm, req.destination_url, { signal }));
        this.liveSnapshot = { abort, settled: running.then(() => undefined, () => undefined) };
        try {
          result = await running;
        } finally {
          this.liveSnapshot = undefined;
        }
      } else {
        result = ops !== undefined ? await ops.snapshots.checkpoint(req.destination_url) : await (await loadPersist()).snapshotVm(vm, req.destination_url);
      }
      this.emit('vm', 'snapshotted', { duration_ms: performance.now() - start, ...result });
      return live ? result as LiveSnapshotSummary : undefined;
    });
  }

  restore(req: RestoreRequest): Promise<void> {
    return this.exclusive('vm.restore', async () => {
      if (this.vm !== undefined && this.vm.state !== 'Shutdown') throw new InvalidStateError('a VM already exists: restore needs an empty VMM');
      this.emit('vm', 'restoring');
      const start = performance.now();
      // A checkpoint with disks restores onto new overlays over its frozen images.
      const vm = await (await this.loadDiskOps()).snapshots.restoreIfCheckpoint(req) ?? await (await loadPersist()).restoreVm(req, (config: VmConfig) => this.hooks(config));
      try {
        // The restored VM is paused: nothing is lost while its port sockets come up.
        await this.openPorts(vm.config);
      } catch (e) {
        await vm.close();
        throw e;
      }
      this.vm = vm;
      this.configSource = vm;
      this.endReported = false;
      this.attachStdin(vm);
      this.emit('vm', 'restored', { duration_ms: performance.now() - start });
      if (req.resume === true) await this.resumeVm(vm);
    });
  }

  shutdownVmm(): Promise<void> {
    return this.end({ kind: 'requested' });
  }

  // ---- ending --------------------------------------------------------------------------------

  private async teardown(vm: Vm): Promise<void> {
    await this.diskOps?.jobs.cancelAll();
    // A live snapshot reads guest RAM until it stops: it must be gone before the RAM is unmapped.
    this.liveSnapshot?.abort.abort(new InvalidStateError('the VM ended during its live snapshot'));
    await this.liveSnapshot?.settled;
    this.detachStdin();
    await vm.close();
  }

  /** Ends the VM (if any) and tells the owner why; the owner decides whether the process exits. */
  async end(end: VmEnd): Promise<void> {
    if (this.endReported) return;
    this.endReported = true;
    const events: Record<VmEnd['kind'], string> = {
      poweroff: 'power-off', reset: 'reset', triple_fault: 'triple-fault', vcpu_error: 'vcpu-error', signal: 'shutdown', requested: 'shutdown',
    };
    // The guest ended its VM (source vm, with the guest's status or the failing vCPU), or the VMM
    // itself is stopping (source vmm, as Cloud Hypervisor's event monitor reports it).
    const details = end.kind === 'poweroff' ? { status: end.status } : end.kind === 'vcpu_error' ? { vcpu: end.vcpu, message: end.message } : end.kind === 'signal' ? { signal: end.signal } : null;
    this.emit(end.kind === 'signal' || end.kind === 'requested' ? 'vmm' : 'vm', events[end.kind], details);
    if (this.vm !== undefined) await this.teardown(this.vm);
    this.options.onVmEnd(end);
  }

  // ---- disk snapshots, checkpoints, block jobs -----------------------------------------------

  /** A disk-changing operation: one at a time, and never while a block job runs. */
  private diskOperation(route: string, doing: string, run: () => Promise<unknown>): Promise<void> {
    return this.exclusive(route, async () => {
      // Loaded with the API server; an in-process VMM (benchmarks) loads them on first use.
      (await this.loadDiskOps()).jobs.refuseWhileRunning(doing);
      await run();
    });
  }

  resizeDisk(req: ResizeDiskRequest): Promise<void> {
    return this.diskOperation('vm.resize-disk', 'resize a disk', async () => {
      const vm = this.requireVm();
      if (vm.state !== 'Running' && vm.state !== 'Paused') throw new InvalidStateError(`cannot resize a disk of a VM that is ${vm.state}`);
      await diskById(vm.platform.disks, req.id).resize(req.desired_size);
      this.emit('vm', 'disk-resized', { id: req.id, desired_size: req.desired_size });
    });
  }

  snapshotDisk(req: DiskSnapshotRequest): Promise<void> {
    return this.diskOperation('vm.snapshot-disk', 'snapshot a disk', () => this.ops.snapshots.snapshotDisk(req));
  }

  snapshotCreate(req: SnapshotCreateRequest): Promise<void> {
    return this.diskOperation('vm.snapshot-create', 'create a snapshot', () => this.ops.snapshots.create(req));
  }

  snapshotList(req: SnapshotListRequest): SnapshotListing {
    return this.ops.snapshots.list(req);
  }

  snapshotRevert(req: SnapshotNameRequest): Promise<void> {
    return this.diskOperation('vm.snapshot-revert', 'revert to a snapshot', () => this.ops.snapshots.revert(req));
  }

  snapshotDelete(req: SnapshotNameRequest): Promise<void> {
    return this.diskOperation('vm.snapshot-delete', 'delete a snapshot', () => this.ops.snapshots.delete(req));
  }

  lastDiskOperation(): LastOperation | null {
    return this.ops.snapshots.last ?? null;
  }

  blockCommit(req: BlockCommitRequest): Promise<void> {
    return this.exclusive('vm.block-commit', async () => { await this.ops.jobs.startCommit(req); });
  }

  blockPull(req: BlockPullRequest): Promise<void> {
    return this.exclusive('vm.block-pull', async () => { await this.ops.jobs.startPull(req); });
  }

  blockJobs(): BlockJobInfo[] {
    return this.ops.jobs.list();
  }

  blockJobCancel(req: JobCancelRequest): Promise<void> {
    return this.ops.jobs.cancel(req.id);
  }

  async serveApi(listen: ApiListen): Promise<void> {
    const { startApiServer } = await import('./api/server.js');
    await this.loadDiskOps();
    this.api = await startApiServer({ listen, controller: this });
    // An empty VMM waits for vm.create/vm.restore: have vCPU threads ready so a warm restore
    // does not pay for starting them.
    if (this.vm === undefined) {
      prewarmVcpuWorkers(WARM_VCPU_WORKERS);
      prepareSpareVm();
      void loadPersist();
      // Node loads perf_hooks (~3 ms) on the first use of `performance`; restore timing uses it.
      performance.now();
    }
  }

  /** Releases everything (VM, API socket, the ports' files and sockets). */
  async dispose(): Promise<void> {
    releaseSpareVm();
    // The process may exit next, and it cannot stop a vCPU thread that is still loading koffi.
    waitForVcpuWorkersLoaded();
    this.detachStdin();
    if (this.vm !== undefined) await this.vm.close();
    await this.api?.close();
    await this.ports.serial.close();
    await this.ports.console.close();
  }
}
