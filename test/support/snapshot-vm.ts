/**
 * Helpers for the snapshot/restore integration tests: raw HTTP over the API's Unix socket (so
 * the tests do not depend on the client they are meant to check), a booted-VM wrapper that
 * drives pause → snapshot → kill, and fingerprints of a snapshot directory's files.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { TsvmmProcess, repoRoot, tinyElf, tsvmmBin } from './tsvmm-process.js';
import { deadline } from './timing.js';

export interface HttpResult {
  status: number;
  body: string;
  /** The parsed body when it is JSON, else undefined. */
  json: unknown;
}

/** One HTTP request over a Unix socket (`curl --unix-socket`), body as JSON when given. */
export function apiRequest(socketPath: string, method: 'GET' | 'PUT', endpoint: string, body?: unknown, timeoutMs = deadline(30_000)): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request({
      socketPath, method, path: `/api/v1/${endpoint}`, timeout: timeoutMs,
      headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => { text += d; }).on('end', () => {
        let json: unknown;
        try { json = text.length > 0 ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode ?? 0, body: text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${endpoint} on ${socketPath} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Like apiRequest but throws unless the status is 2xx. */
export async function apiOk(socketPath: string, method: 'GET' | 'PUT', endpoint: string, body?: unknown): Promise<HttpResult> {
  const r = await apiRequest(socketPath, method, endpoint, body);
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${endpoint}: HTTP ${r.status} ${r.body}`);
  return r;
}

/** Waits until the API answers vmm.ping (the socket file appears before listen() completes). */
export async function waitForApi(socketPath: string, proc?: TsvmmProcess, timeoutMs = deadline(20_000)): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    if (proc !== undefined && (proc.child.exitCode !== null || proc.child.signalCode !== null)) {
      throw new Error(`tsvmm exited before its API came up; stderr:\n${proc.stderr}`);
    }
    if (existsSync(socketPath)) {
      try {
        const r = await apiRequest(socketPath, 'GET', 'vmm.ping', undefined, deadline(2_000));
        if (r.status === 200) return;
      } catch { /* not listening yet */ }
    }
    if (Date.now() > giveUpAt) throw new Error(`API at ${socketPath} did not come up in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function fileUrl(dir: string): string {
  return `file://${dir}`;
}

/**
 * Console line parsers for the tiny kernel. Only complete lines count: a pause can land in the
 * middle of a line, whose rest then appears after resume.
 */
export function ticksIn(text: string): Array<{ n: number; ap: number | undefined }> {
  return [...text.matchAll(/^tick (\d+)(?: ap=(\d+))?\n/gm)].map((m) => ({ n: Number(m[1]), ap: m[2] === undefined ? undefined : Number(m[2]) }));
}

export function memtestPassesIn(text: string): number[] {
  return [...text.matchAll(/^memtest: pass (\d+) ok\n/gm)].map((m) => Number(m[1]));
}

export interface BootOptions {
  cpus: number;
  memory: string;
  cmdline: string;
  socketPath: string;
  disks?: string[];
}

/** Boots the tiny kernel with an API socket and waits for the API. */
export async function bootTiny(o: BootOptions): Promise<TsvmmProcess> {
  const args = ['--kernel', tinyElf, '--serial', 'tty', '--cpus', `boot=${o.cpus}`, '--memory', `size=${o.memory}`, '--cmdline', o.cmdline, '--api-socket', o.socketPath];
  for (const d of o.disks ?? []) args.push('--disk', d);
  const proc = new TsvmmProcess(args);
  try {
    await waitForApi(o.socketPath, proc);
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
  return proc;
}

/**
 * Restores `dir` in a new tsvmm process (`--restore`) and waits until the VM exists (the API
 * socket is served before the restore runs, and vm.info answers 409 while it does).
 */
export async function restoreProcess(dir: string, socketPath: string, extra = '', timeoutMs = deadline(30_000)): Promise<TsvmmProcess> {
  const proc = new TsvmmProcess(['--restore', `source_url=${fileUrl(dir)}${extra}`, '--api-socket', socketPath]);
  try {
    await waitForApi(socketPath, proc);
    const giveUpAt = Date.now() + timeoutMs;
    for (;;) {
      const r = await apiRequest(socketPath, 'GET', 'vm.info');
      if (r.status === 200) return proc;
      if (r.status !== 409) throw new Error(`vm.info after --restore: HTTP ${r.status} ${r.body}`);
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`tsvmm --restore exited; stderr:\n${proc.stderr}`);
      if (Date.now() > giveUpAt) throw new Error(`tsvmm --restore did not finish in ${timeoutMs} ms; stderr:\n${proc.stderr}`);
      await new Promise((r2) => setTimeout(r2, 10));
    }
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
}

/** Pauses, snapshots to `dir`, and returns the console output seen up to the pause. */
export async function pauseAndSnapshot(proc: TsvmmProcess, socketPath: string, dir: string): Promise<{ consoleAtPause: string; snapshotMs: number }> {
  await apiOk(socketPath, 'PUT', 'vm.pause');
  // Serial output reaches stdout (a pipe, written synchronously) before pause returns.
  const consoleAtPause = proc.stdout;
  const t0 = performance.now();
  await apiOk(socketPath, 'PUT', 'vm.snapshot', { destination_url: fileUrl(dir) });
  return { consoleAtPause, snapshotMs: performance.now() - t0 };
}

/** SIGKILLs the process and waits for it to be gone. */
export async function killHard(proc: TsvmmProcess): Promise<void> {
  proc.kill('SIGKILL');
  await proc.exited;
}

export interface FileFingerprint {
  sha256: string;
  size: number;
  mtimeNs: bigint;
  ino: bigint;
}

/** sha256, size, mtime and inode of every file in `dir` (by name). */
export async function fingerprintDir(dir: string): Promise<Map<string, FileFingerprint>> {
  const out = new Map<string, FileFingerprint>();
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name);
    const st = await stat(path, { bigint: true });
    const sha256 = createHash('sha256').update(await readFile(path)).digest('hex');
    out.set(name, { sha256, size: Number(st.size), mtimeNs: st.mtimeNs, ino: st.ino });
  }
  return out;
}

/** Bytes the files in `dir` occupy on disk (what `du` counts: allocated blocks, not holes). */
export async function diskUsageBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) total += (await stat(join(dir, name))).blocks * 512;
  return total;
}

/** Runs tsvmm to completion with no stdin (so a quick exit cannot race a stdin write). */
export function runTsvmm(args: string[], timeoutMs = deadline(30_000)): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsvmmBin, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}
