/**
 * The host's own tools as oracles for what a guest left on its disks: a command that must
 * succeed, e2fsck, and file checksums.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { run } from './tsvmm-process.js';
import { deadline } from './timing.js';

/** sha256 of a whole file, hex. */
export const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Runs a host command that must succeed; returns its stdout. */
export async function host(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: deadline(30_000) });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** `e2fsck -fn` on the host: 0 means clean (nothing to fix); anything else fails the test. */
export async function expectCleanExt4(image: string): Promise<void> {
  const r = await run('e2fsck', ['-fn', image], { timeoutMs: deadline(30_000) });
  expect(r.code, `e2fsck -fn ${image}:\n${r.stdout}${r.stderr}`).toBe(0);
}
