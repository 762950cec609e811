import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { deadline } from './timing.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const tsvmmBin = join(repoRoot, 'dist', 'cli', 'tsvmm.js');
export const remoteBin = join(repoRoot, 'dist', 'cli', 'tsvmm-remote.js');
export const imgBin = join(repoRoot, 'dist', 'cli', 'tsvmm-img.js');
export const tinyElf = join(repoRoot, 'guest-images', 'out', 'tiny.elf');
export const tinyBzImage = join(repoRoot, 'guest-images', 'out', 'tiny.bzImage');

export interface TsvmmProcessOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** 'pipe' to type into the guest's serial console with write() (tsvmm feeds stdin to it). */
  stdin?: 'pipe' | 'ignore';
  /** The Node.js program to run (default tsvmm; e.g. tsvmm-remote for `console`). */
  bin?: string;
  /** Run it in this network namespace (`ip netns exec NAME`, which execs it: the pid is tsvmm's). */
  netns?: string;
}

/** A tsvmm child process whose serial console (stdout) and stderr are collected as text. */
export class TsvmmProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: Array<() => void> = [];

  constructor(args: string[], opts: TsvmmProcessOptions = {}) {
    const command = [process.execPath, opts.bin ?? tsvmmBin, ...args];
    if (opts.netns !== undefined) command.unshift('ip', 'netns', 'exec', opts.netns);
    this.child = spawn(command[0]!, command.slice(1), {
      cwd: opts.cwd ?? repoRoot,
      env: { ...process.env, ...opts.env },
      stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
    });
    // A guest that ends while a test is still typing closes the pipe: that is not an error here.
    this.child.stdin?.on('error', () => {});
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => { this.stdout += d; this.wake(); });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => { this.stderr += d; this.wake(); });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => { this.wake(); resolve({ code, signal }); });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until `pattern` matches the console output (or `stream`); returns the match. */
  async waitFor(pattern: RegExp, timeoutMs = deadline(20_000), from = 0, stream: 'stdout' | 'stderr' = 'stdout'): Promise<RegExpMatchArray> {
    const giveUpAt = Date.now() + timeoutMs;
    for (;;) {
      const m = this[stream].slice(from).match(pattern);
      if (m !== null) return m;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`tsvmm exited (${this.child.exitCode ?? this.child.signalCode}) before ${pattern}; stdout:\n${this.stdout.slice(-2000)}\nstderr:\n${this.stderr.slice(-2000)}`);
      }
      const left = giveUpAt - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}; stdout:\n${this.stdout.slice(-2000)}\nstderr:\n${this.stderr.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** Types `text` on the process's stdin (needs `stdin: 'pipe'`). */
  write(text: string): void {
    if (this.child.stdin === null) throw new Error('this process was started without a stdin pipe');
    this.child.stdin.write(text);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

/** Runs a command to completion and returns its exit status and output. */
export function run(cmd: string, args: string[], opts: { cwd?: string; input?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? deadline(60_000));
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    child.stdin.end(opts.input ?? '');
  });
}
