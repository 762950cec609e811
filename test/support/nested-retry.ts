/**
 * Retries on the nested test host, never silent. Nested under QEMU's TCG, guests were seen to
 * fail at random, rarely (vitest.config.ts): there vitest runs a failed test once more, and a
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

/** Runs a set-up step; nested only, once more if it fails. `file` and `what` name it in the record. */
export async function setupStep<T>(file: string, what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    if (!NESTED) throw e;
    const firstFailure = (e instanceof Error ? e.message : String(e)).slice(0, 4000);
    try {
      const value = await step();
      recordRetry({ file, name: `set-up: ${what}`, state: 'passed', retries: 1, firstFailure });
      return value;
    } catch (e2) {
      recordRetry({ file, name: `set-up: ${what}`, state: 'failed', retries: 1, firstFailure });
      throw e2;
    }
  }
}
