import { expect } from 'vitest';
import { run, tsvmmBin } from './tsvmm-process.js';
import { deadline } from './timing.js';

/** Runs a command line that must fail before any guest output, and checks the shape of the failure. */
export async function expectFailure(cmd: string, args: string[], status: number, message: RegExp): Promise<void> {
  const r = await run(cmd, args, { timeoutMs: deadline(30_000) });
  const shown = `status ${r.code}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`;
  expect(r.stderr, shown).toMatch(/^tsvmm: [^\n]+\n$/); // exactly one line, prefixed
  expect(r.stderr, shown).toMatch(message);
  expect(r.stderr, shown).not.toMatch(/\n\s+at |Error:|node:internal/); // no stack trace or raw exception
  expect(r.stdout, shown).toBe('');
  expect(r.code, shown).toBe(status);
}

/** `tsvmm ARGS` must fail with `status` and one line matching `message`. */
export const expectTsvmmFailure = (args: string[], status: number, message: RegExp): Promise<void> =>
  expectFailure(process.execPath, [tsvmmBin, ...args], status, message);
