/**
 * A vitest reporter for the nested tier's retries (vitest.config.ts): every test that failed and
 * was run again is recorded with the failure of its first attempt, whatever the retry gave
 * (nested-retry.ts). A retry must never pass silently: a test that needed one is a flaky host or
 * a tsvmm bug to look at.
 */
import { relative } from 'node:path';
import type { Reporter, TestCase } from 'vitest/node';
import { recordRetry } from './nested-retry.js';

export default class RetriedReporter implements Reporter {
  onTestCaseResult(test: TestCase): void {
    const retries = test.diagnostic()?.retryCount ?? 0;
    if (retries === 0) return;
    const result = test.result();
    recordRetry({
      file: relative(process.cwd(), test.module.moduleId),
      name: test.fullName,
      state: result.state,
      retries,
      firstFailure: (result.errors ?? []).map((e) => e.message).join('\n').slice(0, 4000),
    });
  }
}
