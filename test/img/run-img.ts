import { main } from '../../src/cli/tsvmm-img.js';

/** Runs tsvmm-img in-process, as its CLI would, and returns its exit status and output. */
export async function img(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

/** What `qemuCheck` returns for an image with no corruption, leak or check error. */
export const CLEAN = { corruptions: 0, leaks: 0, checkErrors: 0, status: 0 };
