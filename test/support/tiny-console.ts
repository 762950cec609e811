/**
 * Runs tsvmm to completion and reads the tiny kernel's console lines (formats in
 * guest-images/README.md), so integration tests assert on parsed fields, not on loose substrings.
 */
import { TsvmmProcess } from './tsvmm-process.js';
import { deadline } from './timing.js';

export interface TsvmmResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  lines: string[];
}

/**
 * Starts `tsvmm ARGS` and waits for it to exit. A run that outlives `timeoutMs` is killed and
 * reported as a failure with its output, so a hung VMM fails the test instead of stalling it.
 */
export async function runTsvmm(args: string[], timeoutMs = deadline(30_000)): Promise<TsvmmResult> {
  const p = new TsvmmProcess(args);
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; p.kill('SIGKILL'); }, timeoutMs);
  const { code, signal } = await p.exited;
  clearTimeout(timer);
  if (timedOut) throw new Error(`tsvmm ${args.join(' ')} did not exit within ${timeoutMs} ms; stdout:\n${p.stdout.slice(-2000)}\nstderr:\n${p.stderr.slice(-2000)}`);
  // An uncaught exception is never an expected outcome: report it whole rather than as a missing line.
  if (/^\s+at .+:\d+:\d+\)?$/m.test(p.stderr)) throw new Error(`tsvmm ${args.join(' ')} crashed (status ${code ?? signal}):\n${p.stderr.slice(-3000)}`);
  return { code, signal, stdout: p.stdout, stderr: p.stderr, lines: consoleLines(p.stdout) };
}

/** The console split into complete lines (CRs dropped: the UART path may translate newlines). */
export function consoleLines(text: string): string[] {
  return text.replace(/\r/g, '').split('\n').filter((l) => l.length > 0);
}

export interface Banner {
  boot: 'pvh' | 'linux';
  cpus: number;
  memMiB: number;
  cmdline: string;
}

const BANNER = /^tiny: boot=(pvh|linux) cpus=(\d+) mem=(\d+)MiB cmdline="(.*)"$/;

/** Parses the banner, which the tiny kernel always prints as its first line. */
export function parseBanner(line: string | undefined): Banner {
  const m = line === undefined ? null : BANNER.exec(line);
  if (m === null) throw new Error(`not a tiny banner: ${JSON.stringify(line)}`);
  return { boot: m[1] as Banner['boot'], cpus: Number(m[2]), memMiB: Number(m[3]), cmdline: m[4]! };
}

export interface Tick {
  n: number;
  /** Sum of the APs' counters; absent when only the BSP runs. */
  ap?: bigint;
}

/** Every `tick <n>` / `tick <n> ap=<sum>` line, in order. */
export function parseTicks(lines: string[]): Tick[] {
  const ticks: Tick[] = [];
  for (const line of lines) {
    const m = /^tick (\d+)(?: ap=(\d+))?$/.exec(line);
    if (m === null) continue;
    const t: Tick = { n: Number(m[1]) };
    if (m[2] !== undefined) t.ap = BigInt(m[2]);
    ticks.push(t);
  }
  return ticks;
}
