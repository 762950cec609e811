import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WebSocket } from 'ws';
import { ApiClient } from '../../../src/vmm/api/client.js';
import type { VmState } from '../../../src/vmm/config.js';
import { remoteBin, run, tinyElf, TsvmmProcess } from '../../support/tsvmm-process.js';
import { deadline } from '../../support/timing.js';

/**
 * Harness for control-plane tests against the real `tsvmm` binary (dist/) and the tiny guest:
 * a VMM process with an API socket in a scratch directory, a console tap that timestamps every
 * line the guest prints, and a runner for the `tsvmm-remote` binary.
 */

export interface StartOptions {
  /** Tiny kernel command line; undefined starts an empty VMM (no --kernel). */
  cmdline?: string;
  /** --serial value (default socket). */
  serial?: string;
  /** Scratch directory to reuse (default: a fresh one, removed by stop()). */
  dir?: string;
}

export class RealVmm {
  readonly client: ApiClient;

  private constructor(
    readonly dir: string,
    readonly socketPath: string,
    readonly proc: TsvmmProcess,
    private readonly ownsDir: boolean,
  ) {
    this.client = new ApiClient(socketPath, deadline(15_000));
  }

  /** Starts tsvmm and waits until its API answers (and, with a kernel, until the VM is Running). */
  static async start(opts: StartOptions = {}): Promise<RealVmm> {
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'tsvmm-api-it-'));
    const socketPath = join(dir, `api-${Math.random().toString(36).slice(2, 8)}.sock`);
    const args = ['--api-socket', socketPath];
    if (opts.cmdline !== undefined) args.push('--kernel', tinyElf, '--cmdline', opts.cmdline, '--memory', 'size=64M', '--serial', opts.serial ?? 'socket');
    const vmm = new RealVmm(dir, socketPath, new TsvmmProcess(args), opts.dir === undefined);
    try {
      await vmm.waitUntil(async () => {
        await vmm.client.ping();
        return opts.cmdline === undefined || (await vmm.client.info()).state === 'Running';
      }, deadline(30_000));
    } catch (err) {
      vmm.proc.kill();
      throw err;
    }
    return vmm;
  }

  get pid(): number {
    return this.proc.child.pid!;
  }

  get exited(): boolean {
    return this.proc.child.exitCode !== null || this.proc.child.signalCode !== null;
  }

  /** Polls `check` (errors count as "not yet") until it returns true; fails with tsvmm's stderr. */
  async waitUntil(check: () => Promise<boolean>, timeoutMs = deadline(15_000)): Promise<void> {
    const giveUpAt = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      if (this.exited) throw new Error(`tsvmm exited (${this.proc.child.exitCode ?? this.proc.child.signalCode}); stderr:\n${this.proc.stderr}`);
      try {
        if (await check()) return;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > giveUpAt) throw new Error(`condition not met within ${timeoutMs} ms (last error: ${last}); stderr:\n${this.proc.stderr}`);
      await sleep(20);
    }
  }

  async state(): Promise<VmState> {
    return (await this.client.info()).state;
  }

  /** Runs `tsvmm-remote --api-socket S ARGS`. */
  remote(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const opts: Parameters<typeof run>[2] = { timeoutMs: deadline(30_000) };
    if (input !== undefined) opts.input = input;
    return run(process.execPath, [remoteBin, '--api-socket', this.socketPath, ...args], opts);
  }

  /** Attaches a console tap (vm.console WebSocket). */
  async console(): Promise<ConsoleTap> {
    return new ConsoleTap(await this.client.openWebSocket('vm.console'));
  }

  /** Waits for the process to end; kills it after `timeoutMs`. */
  async waitExit(timeoutMs = deadline(15_000)): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const result = await this.proc.exited;
    clearTimeout(timer);
    return result;
  }

  /** Ends the VMM (vmm.shutdown, then SIGKILL if needed) and removes the scratch directory. */
  async stop(): Promise<void> {
    if (!this.exited) {
      await this.client.shutdownVmm().catch(() => {});
      await this.waitExit(10_000);
    }
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface ConsoleLine {
  text: string;
  /** performance.now() when the line's last byte arrived. */
  at: number;
}

/** Splits the console stream into timestamped lines and waits for patterns in it. */
export class ConsoleTap {
  readonly lines: ConsoleLine[] = [];
  private partial = '';
  private waiters: Array<() => void> = [];
  closed = false;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const at = performance.now();
      const text = this.partial + data.toString('latin1').replace(/\r/g, '');
      const parts = text.split('\n');
      this.partial = parts.pop() ?? '';
      for (const p of parts) this.lines.push({ text: p, at });
      this.wake();
    });
    ws.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Ticks (`tick <n>`) with their arrival times, from line index `from`. */
  ticks(from = 0): Array<{ n: number; at: number }> {
    const out: Array<{ n: number; at: number }> = [];
    for (const l of this.lines.slice(from)) {
      const m = /^tick (\d+)/.exec(l.text);
      if (m !== null) out.push({ n: Number(m[1]), at: l.at });
    }
    return out;
  }

  lastTick(): number | undefined {
    return this.ticks().at(-1)?.n;
  }

  /** What arrived of the line not yet ended by a newline (a pause can land in the middle of one). */
  get pendingLine(): string {
    return this.partial;
  }

  /** Waits until a line from index `from` on matches; returns its index. */
  async waitForLine(pattern: RegExp, from = 0, timeoutMs = deadline(30_000)): Promise<number> {
    const giveUpAt = Date.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex((l, k) => k >= from && pattern.test(l.text));
      if (i >= 0) return i;
      if (this.closed) throw new Error(`console closed before ${pattern}; last lines: ${this.tail()}`);
      const left = giveUpAt - Date.now();
      if (left <= 0) throw new Error(`no console line matching ${pattern} within ${timeoutMs} ms; last lines: ${this.tail()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /**
   * Waits until there are `count` ticks from line index `from` (default: from now on); returns
   * them. Take `from` (lines.length) before a request when the ticks it causes may arrive while
   * waiting for its answer. The tests tick every 10-50 ms: a guest that printed none for 12 s (of
   * a KVM host) has stopped, and waiting no longer keeps a retried attempt cheap.
   */
  async moreTicks(count: number, from = this.lines.length, timeoutMs = deadline(12_000)): Promise<Array<{ n: number; at: number }>> {
    const giveUpAt = Date.now() + timeoutMs;
    while (this.ticks(from).length < count) {
      await this.waitForLine(/^tick \d+/, Math.max(from, this.lines.length), Math.max(1, giveUpAt - Date.now()));
    }
    return this.ticks(from);
  }

  tail(): string {
    return JSON.stringify(this.lines.slice(-5).map((l) => l.text));
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The JSON error body's code, or undefined when the body is not one. */
export function errorCode(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}
