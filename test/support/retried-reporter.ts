/**
 * A vitest reporter for the nested tier's retries (vitest.config.ts): every test that failed and
 * was run again is printed with the failure of its first attempt, whatever the retry gave, and
 * appended to $TSVMM_RETRIED_FILE (JSON lines) for the summary of tools/test.mjs. A retry
 * must never pass silently: a test that needed one is a flaky host or a tsvmm bug to look at.
 */
import { appendFileSync } from 'node:fs';
import { relative } from 'node:path';
import type { Reporter, TestCase } from 'vitest/node';

export interface RetriedTest {
  file: string;
  name: string;
  state: string;
  retries: number;
  firstFailure: string;
}

export default class RetriedReporter implements Reporter {
  onTestCaseResult(test: TestCase): void {
    const retries = test.diagnostic()?.retryCount ?? 0;
    if (retries === 0) return;
    const result = test.result();
    const entry: RetriedTest = {
      file: relative(process.cwd(), test.module.moduleId),
      name: test.fullName,
      state: result.state,
      retries,
      firstFailure: (result.errors ?? []).map((e) => e.message).join('\n').slice(0, 4000),
    };
    process.stdout.write(`\nRETRIED (${entry.state} after ${retries} retr${retries === 1 ? 'y' : 'ies'}) ${entry.file} > ${entry.name}\nfirst failure: ${entry.firstFailure}\n\n`);
    const file = process.env.TSVMM_RETRIED_FILE;
    if (file !== undefined) appendFileSync(file, `${JSON.stringify(entry)}\n`);
  }
}
