import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** qemu-img / qemu-io are the oracle for every qcow2 test. */
export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8' });
}

export function qemuImgStatus(...args: string[]): { status: number; stdout: string; stderr: string } {
  // A crashed writer may leave many thousands of leaked clusters, one stderr line each.
  const r = spawnSync('qemu-img', args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function qemuIo(file: string, ...commands: string[]): void {
  execFileSync('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file], { encoding: 'utf8' });
}

/** Parsed `qemu-img check --output=json`; throws on nothing, reports counts. */
export function qemuCheck(file: string): { corruptions: number; leaks: number; checkErrors: number; status: number } {
  let r = qemuImgStatus('check', '--output=json', file);
  // A writer SIGKILLed in the middle of a long fdatasync can hold its image lock for a moment
  // after it was reaped (measured here: up to a few hundred ms): wait for it rather than fail.
  for (let tries = 0; r.status === 1 && r.stderr.includes('lock') && tries < 50; tries++) {
    spawnSync('sleep', ['0.1']);
    r = qemuImgStatus('check', '--output=json', file);
  }
  if (r.stdout.trim() === '') throw new Error(`qemu-img check ${file} failed (${r.status}): ${r.stderr}`);
  const j = JSON.parse(r.stdout) as Record<string, number>;
  return { corruptions: j['corruptions'] ?? 0, leaks: j['leaks'] ?? 0, checkErrors: j['check-errors'] ?? 0, status: r.status };
}

/** The guest-visible content as qemu-img sees it. */
export function qemuContent(file: string, dir: string): Buffer {
  const out = join(dir, `content-${Math.random().toString(36).slice(2)}.raw`);
  qemuImg('convert', '-O', 'raw', file, out);
  const data = readFileSync(out);
  rmSync(out);
  return data;
}

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-qcow2-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export { prng } from '../../support/prng.js';

/** Deterministic non-zero content for [offset, offset+length) tagged by `tag`. */
export function pattern(length: number, tag: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = ((i * 31 + tag * 17) % 251) + 1;
  return b;
}

/** A raw file with data, zero holes and a sparse tail, to convert into every qcow2 variant. */
export function writeSampleRaw(path: string, size: number): Buffer {
  const content = Buffer.alloc(size);
  for (let at = 0; at < size; at += 96 * 1024) {
    const len = Math.min(40 * 1024 + ((at / 1024) % 7) * 1000, size - at);
    if ((at / (96 * 1024)) % 5 === 3) continue;
    pattern(len, at / 1024).copy(content, at);
  }
  content.fill(0, Math.floor(size * 0.75));
  writeFileSync(path, content);
  return content;
}
