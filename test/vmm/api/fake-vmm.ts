import { ConfigError, TsvmmError } from '../../../src/errors.js';
import type { VmConfig, VmState } from '../../../src/vmm/config.js';
import type {
  ConsoleAttachment,
  ConsolePortName,
  VmCounters,
  VmInfo,
  VmmController,
  VmmEvent,
} from '../../../src/vmm/controller.js';
import type { LiveSnapshotSummary, ResizeDiskRequest, RestoreRequest, SnapshotRequest } from '../../../src/vmm/requests.js';
import { ConflictError, InvalidStateError, NoVmError } from '../../../src/vmm/errors.js';

/**
 * TEST DOUBLE of VmmController (never shipped in src/): an in-memory lifecycle state machine with
 * the same transitions and error codes the real VMM uses, so the API can be tested without KVM.
 *   (none) --create--> Created --boot--> Running <--pause/resume--> Paused
 *   Running|Paused --shutdown--> Shutdown --boot--> Running;  (none) --restore--> Paused
 * Slow operations can be simulated with `delays` to exercise the server's conflict handling.
 * The console echoes input back as output, prefixed, so a round trip is observable.
 */
export class FakeVmm implements VmmController {
  config: VmConfig | undefined;
  state: VmState | undefined;
  readonly events: VmmEvent[] = [];
  readonly snapshots: SnapshotRequest[] = [];
  readonly resizes: ResizeDiskRequest[] = [];
  readonly consoleInput: number[] = [];
  delays: Partial<Record<'snapshot' | 'restore' | 'pause' | 'boot', number>> = {};
  failNext: Error | undefined;
  shutdownVmmCalls = 0;
  private readonly listeners = new Set<(e: VmmEvent) => void>();
  private consoleAttached = false;
  /** The `port` of each attachConsole call (undefined: the default). */
  readonly consolePorts: Array<ConsolePortName | undefined> = [];
  powerButtonPresses = 0;
  private running = 0; // operations executing concurrently: the server must keep this ≤ 1
  maxConcurrentOps = 0;
  private eventSeq = 0;

  get subscriberCount(): number {
    return this.listeners.size;
  }
  get consoleIsAttached(): boolean {
    return this.consoleAttached;
  }

  ping(): { build_version: string; version: string; pid: number; features: string[] } {
    return { build_version: 'test-double', version: '0.1.0', pid: process.pid, features: ['fake'] };
  }

  info(): VmInfo {
    const { config, state } = this.requireVm();
    return { config, state, memory_actual_size: config.memory.size };
  }

  counters(): VmCounters {
    this.requireVm();
    return { vcpu0: { io: 3, mmio: 1 }, serial: { tx_bytes: this.consoleInput.length } };
  }

  create(config: VmConfig): Promise<void> {
    return this.op('create', async () => {
      if (this.state !== undefined) throw new InvalidStateError('a VM already exists in this VMM; start another tsvmm for a second VM');
      this.config = config;
      this.state = 'Created';
      this.emit('vm', 'created');
    });
  }

  boot(): Promise<void> {
    return this.op('boot', async () => {
      this.expect(['Created', 'Shutdown'], 'boot');
      this.emit('vm', 'booting');
      this.state = 'Running';
      this.emit('vm', 'booted');
    });
  }

  pause(): Promise<void> {
    return this.op('pause', async () => {
      this.expect(['Running'], 'pause');
      this.emit('vm', 'pausing');
      this.state = 'Paused';
      this.emit('vm', 'paused');
    });
  }

  resume(): Promise<void> {
    return this.op('resume', async () => {
      this.expect(['Paused'], 'resume');
      this.emit('vm', 'resuming');
      this.state = 'Running';
      this.emit('vm', 'resumed');
    });
  }

  shutdown(): Promise<void> {
    return this.op('shutdown', async () => {
      this.expect(['Running', 'Paused'], 'shut down');
      this.state = 'Shutdown';
      this.emit('vm', 'shutdown');
    });
  }

  delete(): Promise<void> {
    return this.op('delete', async () => {
      if (this.config === undefined && this.state === undefined) return;
      if (this.state === 'Running' || this.state === 'Paused') this.emit('vm', 'shutdown');
      this.config = undefined;
      this.state = undefined;
      this.emit('vm', 'deleted');
    });
  }

  reboot(): Promise<void> {
    return this.op('reboot', async () => {
      this.expect(['Running'], 'reboot');
      this.emit('vm', 'rebooting');
      this.emit('vm', 'rebooted');
    });
  }

  powerButton(): Promise<void> {
    return this.op('power-button', async () => {
      this.expect(['Running'], 'press the power button of');
      this.powerButtonPresses++;
      this.emit('vm', 'power-button');
    });
  }

  snapshot(req: SnapshotRequest): Promise<LiveSnapshotSummary | undefined> {
    let report: LiveSnapshotSummary | undefined;
    return this.op('snapshot', async () => {
      const live = req.live === true && this.state === 'Running';
      if (!live) this.expect(['Paused'], 'snapshot');
      this.emit('vm', 'snapshotting');
      this.snapshots.push(req);
      if (live) {
        report = {
          destination: new URL(req.destination_url).pathname, memory_bytes_written: 4096, memory_bytes_allocated: 4096,
          live: true, pause_ms: 1.5, pause_phases: { stop_ms: 0.5, copy_ms: 0.5, state_ms: 0.5, disks_ms: 0, resume_ms: 0 }, total_ms: 9, rounds: [{ pages: 1, bytes: 4096, ms: 2 }], final_pages: 1, converged: true,
        };
      }
      this.emit('vm', 'snapshotted');
    }).then(() => report);
  }

  restore(req: RestoreRequest): Promise<void> {
    return this.op('restore', async () => {
      if (this.state !== undefined) throw new InvalidStateError('restore needs an empty VMM: a VM already exists');
      const snap = this.snapshots.find((s) => s.destination_url === req.source_url);
      if (snap === undefined) throw new TsvmmError('ESNAPSHOT', `no snapshot at ${req.source_url}`);
      this.emit('vm', 'restoring');
      this.config ??= { cpus: { boot_vcpus: 1, max_vcpus: 1 }, memory: { size: 1 << 20 }, payload: { kernel: '/k' }, disks: [], serial: { mode: 'Null' }, console: { mode: 'Off' } };
      this.state = 'Paused';
      this.emit('vm', 'restored');
    });
  }

  resizeDisk(req: ResizeDiskRequest): Promise<void> {
    return this.op('resize-disk', async () => {
      this.expect(['Running', 'Paused'], 'resize a disk of');
      if (!this.config!.disks.some((d) => d.id === req.id)) throw new ConfigError(`no disk "${req.id}"`);
      this.resizes.push(req);
      this.emit('vm', 'disk-resized');
    });
  }

  async shutdownVmm(): Promise<void> {
    this.shutdownVmmCalls++;
    this.state = undefined;
    this.emit('vmm', 'shutdown');
  }

  subscribe(listener: (e: VmmEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  attachConsole(port?: ConsolePortName): ConsoleAttachment {
    this.consolePorts.push(port);
    const { config } = this.requireVm();
    if (config.serial.mode !== 'Socket') throw new InvalidStateError(`the serial port is in ${config.serial.mode} mode; the console needs Socket`);
    if (this.consoleAttached) throw new ConflictError('console already attached');
    this.consoleAttached = true;
    let output: ((bytes: Uint8Array) => void) | undefined;
    let detached = false;
    return {
      onOutput: (l) => {
        output = l;
      },
      input: (bytes) => {
        if (detached) throw new Error('input after detach');
        this.consoleInput.push(...bytes);
        output?.(new Uint8Array([...Buffer.from('echo:'), ...bytes]));
      },
      detach: () => {
        if (detached) throw new Error('detached twice');
        detached = true;
        this.consoleAttached = false;
      },
    };
  }

  /** Emits an event now (tests use this to stream events without lifecycle changes). */
  emit(source: VmmEvent['source'], event: string): void {
    const seq = this.eventSeq++;
    const e: VmmEvent = { timestamp: { secs: seq, nanos: 0 }, source, event, properties: { seq } };
    this.events.push(e);
    for (const l of this.listeners) l(e);
  }

  private requireVm(): { config: VmConfig; state: VmState } {
    if (this.config === undefined || this.state === undefined) throw new NoVmError();
    return { config: this.config, state: this.state };
  }

  private expect(states: VmState[], action: string): void {
    const { state } = this.requireVm();
    if (!states.includes(state)) throw new InvalidStateError(`cannot ${action} a VM that is ${state} (needs ${states.join(' or ')})`);
  }

  private async op(name: keyof FakeVmm['delays'] | string, body: () => Promise<void>): Promise<void> {
    this.running++;
    this.maxConcurrentOps = Math.max(this.maxConcurrentOps, this.running);
    try {
      const delay = (this.delays as Record<string, number | undefined>)[name];
      if (delay !== undefined) await new Promise((r) => setTimeout(r, delay));
      if (this.failNext !== undefined) {
        const err = this.failNext;
        this.failNext = undefined;
        throw err;
      }
      await body();
    } finally {
      this.running--;
    }
  }
}
