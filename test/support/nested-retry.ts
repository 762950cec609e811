/**
 * Retries on the nested test host, never silent. Nested under QEMU's TCG, guests were seen to
 * fail at random, rarely (vitest.config.ts): there vitest runs a failed test up to twice more, and a
 * file's shared set-up that boots a guest (a beforeAll, which vitest's retry does not cover) goes
 * through setupStep(). Every retry is printed with its first failure and recorded for npm test's
 * summary (tools/test.mjs); on a KVM host nothing is retried.
 */
import { appendFileSync } from 'node:fs';

export const NESTED = process.env.TSVMM_NESTED === '1';

export interface RetriedTest {
  file: string;
  name: string;
  state: 'passed' | 'failed' | string;
  retries: number;
  firstFailure: string;
}

/** Prints a retry and appends it to $TSVMM_RETRIED_FILE (JSON lines), where the summary reads it. */
export function recordRetry(r: RetriedTest): void {
  process.stdout.write(`\nRETRIED (${r.state} after ${r.retries} retr${r.retries === 1 ? 'y' : 'ies'}) ${r.file} > ${r.name}\nfirst failure: ${r.firstFailure}\n\n`);
  const file = process.env.TSVMM_RETRIED_FILE;
  if (file !== undefined) appendFileSync(file, `${JSON.stringify(r)}\n`);
}

/** Retries of a failed test on the nested host (vitest.config.ts uses it). */
export const NESTED_RETRIES = 2;
/**
 * Retries of a failed set-up step there: set-ups boot Linux from scratch, the phase the nested
 * host faults in most (2 of 8 boots of one 1-vCPU guest in a row, 2026-12-02), and a file's
 * every test depends on its set-up.
 */
export const NESTED_SETUP_RETRIES = 3;

/** Runs a set-up step; nested only, up to NESTED_SETUP_RETRIES more times if it fails. `file` and `what` name it in the record. */
export async function setupStep<T>(file: string, what: string, step: () => Promise<T>): Promise<T> {
  let firstFailure = '';
  for (let attempt = 0; ; attempt++) {
    try {
      const value = await step();
      if (attempt > 0) recordRetry({ file, name: `set-up: ${what}`, state: 'passed', retries: attempt, firstFailure });
      return value;
    } catch (e) {
      if (!NESTED) throw e;
      const message = (e instanceof Error ? e.message : String(e)).slice(0, 4000);
      if (attempt === 0) firstFailure = message;
      // Printed at once, not only in the summary: a failed boot can take minutes, and the nested
      // runner stops a run that prints nothing for 15 minutes.
      process.stdout.write(`\nset-up attempt ${attempt + 1} of ${NESTED_SETUP_RETRIES + 1} failed: ${file} > ${what}\n${message}\n\n`);
      if (attempt === NESTED_SETUP_RETRIES) {
        recordRetry({ file, name: `set-up: ${what}`, state: 'failed', retries: attempt, firstFailure });
        throw e;
      }
    }
  }
}
