/**
 * Main-thread side of a vCPU worker: starts the worker, answers its port/MMIO exits from the
 * device bus without ever blocking the event loop, and stops it on demand (immediate_exit plus
 * a signal to its thread, which makes a blocked KVM_RUN return EINTR).
 */
import { Worker } from 'node:worker_threads';
import type { ErrorCode } from '../error-codes.js';
import { TsvmmError } from '../errors.js';
import type { VcpuFd } from '../kvm/vcpu.js';
import { pthreadKill } from '../sys/libc.js';
import {
  AccessKind, CONTROL_RUN, CONTROL_STOP, EXIT_COUNTERS, STATE_REQUEST, STATE_RESPONSE, UNCLAIMED_PORTS_COUNTER,
  WORD_ADDR_HI, WORD_ADDR_LO, WORD_CONTROL, WORD_COUNT, WORD_KIND, WORD_SIZE, WORD_STATE,
  createMailbox, type FromWorker, type Mailbox, type StopReason, type ToWorker, type VcpuCall, type WorkerFastPaths,
} from './vcpu-protocol.js';

export class VcpuError extends TsvmmError {
  constructor(message: string, code: string = 'EVCPU') {
    // A worker's code, relayed as it sent it (workers throw only codes of the table).
    super(code as ErrorCode, message);
  }
}

/** Answers one access: fills `data` for reads. Must not throw (the bus swallows device errors). */
export type AccessHandler = (kind: AccessKind, address: number, size: number, count: number, data: Uint8Array) => void;

/** The signal that kicks vCPU threads out of KVM_RUN; a no-op handler is installed once. */
export const KICK_SIGNAL = 'SIGUSR2';
const SIGUSR2 = 12;
let kickHandlerInstalled = false;

function installKickHandler(): void {
  if (kickHandlerInstalled) return;
  // libuv installs a real (async-signal-safe) handler for the process; without any handler the
  // default action of SIGUSR2 would kill the process.
  process.on(KICK_SIGNAL, () => {});
  kickHandlerInstalled = true;
}

const WORKER_URL = new URL('./vcpu-worker.js', import.meta.url);

/**
 * Workers that have already loaded their module (koffi, the KVM wrappers): starting a worker and
 * evaluating its imports takes tens of milliseconds, which would dominate a warm restore. An
 * empty VMM keeps a few ready; a booting VM starts its own while it sets up KVM.
 */
const idleWorkers: Worker[] = [];

/**
 * One flag per live worker that the worker sets once its imports have evaluated. Node cannot
 * stop a worker while it is inside koffi's library loading (koffi's exception during termination
 * aborts the whole process with a native stack trace), so an exit must wait for these first.
 */
const loadFlags = new Map<Worker, Int32Array>();

function startWorker(): Worker {
  const loaded = new Int32Array(new SharedArrayBuffer(4));
  const w = new Worker(WORKER_URL, { workerData: { loaded } });
  loadFlags.set(w, loaded);
  w.once('exit', () => loadFlags.delete(w));
  return w;
}

/**
 * Blocks (at most `timeoutMs`) until every live vCPU worker has finished loading its modules, so
 * that `process.exit` can stop them safely. Used on the way out of the process. The bound is
 * generous: loading takes tens of milliseconds on a KVM host but seconds nested under TCG, and
 * giving up early brings back the abort this wait exists to prevent.
 */
export function waitForVcpuWorkersLoaded(timeoutMs = 60_000): void {
  const deadline = Date.now() + timeoutMs;
  for (const flag of loadFlags.values()) {
    const left = deadline - Date.now();
    if (left <= 0) return;
    Atomics.wait(flag, 0, 0, left);
  }
}

export function prewarmVcpuWorkers(count: number): void {
  while (idleWorkers.length < count) {
    const w = startWorker();
    // An idle worker must not keep the process alive, nor be handed out once it has died.
    w.unref();
    w.once('exit', () => {
      const i = idleWorkers.indexOf(w);
      if (i >= 0) idleWorkers.splice(i, 1);
    });
    idleWorkers.push(w);
  }
}

function takeWorker(): Worker {
  const w = idleWorkers.shift() ?? startWorker();
  w.ref();
  return w;
}

export class VcpuThread {
  readonly id: number;
  private readonly worker: Worker;
  private readonly mailbox: Mailbox;
  private threadId: bigint | undefined;
  private running: Promise<StopReason> | undefined;
  private stopResolve: ((r: StopReason) => void) | undefined;
  private nextCallId = 1;
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private servingMailbox = false;
  private closed = false;

  private constructor(id: number, worker: Worker, mailbox: Mailbox, private readonly vcpu: VcpuFd, private readonly onAccess: AccessHandler) {
    this.id = id;
    this.worker = worker;
    this.mailbox = mailbox;
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (e) => this.failAll(new VcpuError(`vCPU ${id} thread failed: ${e.message}`)));
    worker.on('exit', (code) => {
      if (!this.closed) this.failAll(new VcpuError(`vCPU ${id} thread exited unexpectedly (code ${code})`));
    });
  }

  /** Starts a worker for `vcpu` and waits until it is attached and ready to run. */
  static async start(id: number, vcpu: VcpuFd, onAccess: AccessHandler, fastPaths: WorkerFastPaths): Promise<VcpuThread> {
    installKickHandler();
    const mailbox = createMailbox();
    const worker = takeWorker();
    const thread = new VcpuThread(id, worker, mailbox, vcpu, onAccess);
    const ready = new Promise<void>((resolve, reject) => {
      const onMsg = (m: FromWorker): void => {
        if (m.type === 'ready') {
          thread.threadId = m.threadId;
          worker.off('message', onMsg);
          resolve();
        }
      };
      worker.on('message', onMsg);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new VcpuError(`vCPU ${id} thread exited before it was ready (code ${code})`)));
    });
    const init: ToWorker = { type: 'init', vcpuId: id, fd: vcpu.fd, runAddress: vcpu.runAddress, runSize: vcpu.runSize, mailbox: mailbox.sab, fastPaths };
    worker.postMessage(init);
    await ready;
    return thread;
  }

  get isRunning(): boolean {
    return this.running !== undefined;
  }

  /** Exit counts by kind, read straight from shared memory. */
  counters(): Record<string, number> {
    const out: Record<string, number> = {};
    EXIT_COUNTERS.forEach((name, i) => { out[name] = this.mailbox.counters[i]!; });
    return out;
  }

  /** Port accesses this vCPU's thread answered as unclaimed (no device at the port). */
  unclaimedPorts(): number {
    return this.mailbox.counters[UNCLAIMED_PORTS_COUNTER]!;
  }

  /**
   * Starts KVM_RUN in the worker. The returned promise settles when the loop ends: because it was
   * kicked (`stop()`), or because the guest did something that ends the VM (shutdown, reset...).
   */
  run(): Promise<StopReason> {
    if (this.running !== undefined) throw new VcpuError(`vCPU ${this.id} is already running`, 'EINVALIDSTATE');
    Atomics.store(this.mailbox.words, WORD_CONTROL, CONTROL_RUN);
    this.running = new Promise<StopReason>((resolve) => { this.stopResolve = resolve; });
    this.serveMailbox();
    this.post({ type: 'run' });
    return this.running;
  }

  /** Kicks the vCPU out of KVM_RUN and resolves once its loop has ended. */
  async stop(): Promise<StopReason | undefined> {
    const running = this.running;
    if (running === undefined) return undefined;
    Atomics.store(this.mailbox.words, WORD_CONTROL, CONTROL_STOP);
    this.vcpu.setImmediateExit(true);
    // Signal until the loop reports back: a signal that lands just before the thread enters
    // KVM_RUN is harmless because immediate_exit makes that KVM_RUN return at once.
    const timer = setInterval(() => this.kick(), 5);
    this.kick();
    try {
      return await running;
    } finally {
      clearInterval(timer);
    }
  }

  private kick(): void {
    if (this.threadId !== undefined) pthreadKill(this.threadId, SIGUSR2);
  }

  /** Calls a VcpuFd method inside the (stopped) worker. */
  call<T = unknown>(method: VcpuCall, ...args: unknown[]): Promise<T> {
    if (this.running !== undefined) return Promise.reject(new VcpuError(`vCPU ${this.id} must be stopped to ${method}`, 'EINVALIDSTATE'));
    const id = this.nextCallId++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.post({ type: 'call', id, method, args });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.stop();
    this.closed = true;
    this.post({ type: 'exit' });
    await this.worker.terminate();
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'stopped': {
        const resolve = this.stopResolve;
        this.running = undefined;
        this.stopResolve = undefined;
        resolve?.(m.reason);
        return;
      }
      case 'result': {
        const c = this.calls.get(m.id);
        if (c === undefined) return;
        this.calls.delete(m.id);
        if (m.ok) c.resolve(m.value);
        else c.reject(new VcpuError(`vCPU ${this.id}: ${m.error.message}`, m.error.code));
        return;
      }
      case 'ready':
        return;
    }
  }

  private failAll(e: Error): void {
    for (const c of this.calls.values()) c.reject(e);
    this.calls.clear();
    const resolve = this.stopResolve;
    this.running = undefined;
    this.stopResolve = undefined;
    resolve?.({ kind: 'error', code: 'EVCPU', message: e.message });
  }

  /**
   * Answers the worker's port/MMIO exits while it runs. Atomics.waitAsync resolves on the event
   * loop, so the main thread is never blocked.
   */
  private serveMailbox(): void {
    if (this.servingMailbox) return;
    this.servingMailbox = true;
    const w = this.mailbox.words;
    const step = (): void => {
      for (;;) {
        if (this.running === undefined) { this.servingMailbox = false; return; }
        const state = Atomics.load(w, WORD_STATE);
        if (state === STATE_REQUEST) {
          this.answer();
          continue;
        }
        const r = Atomics.waitAsync(w, WORD_STATE, state);
        if (r.async) {
          // Wake at least when the loop ends, so a stopped vCPU does not leave a waiter behind.
          void Promise.race([r.value, this.running]).then(step);
          return;
        }
      }
    };
    step();
  }

  private answer(): void {
    const w = this.mailbox.words;
    const kind = w[WORD_KIND] as AccessKind;
    const address = (w[WORD_ADDR_LO]! >>> 0) + (w[WORD_ADDR_HI]! >>> 0) * 0x1_0000_0000;
    const size = w[WORD_SIZE]!;
    const count = w[WORD_COUNT]!;
    try {
      this.onAccess(kind, address, size, count, this.mailbox.data);
    } catch {
      // A device fault must never take the vCPU down; reads of a failed access return ones.
      if (kind === AccessKind.PioIn || kind === AccessKind.MmioRead) this.mailbox.data.fill(0xff, 0, size * count);
    }
    Atomics.store(w, WORD_STATE, STATE_RESPONSE);
    Atomics.notify(w, WORD_STATE);
  }
}
