/**
 * A vitest reporter that appends one JSON line per finished test file to $TSVMM_MODULES_FILE:
 * `{"file", "passed", "failed", "skipped"}`. tools/test.mjs reads it when the nested host died in
 * the middle of the kvm tier (QEMU TCG has crashed its own kernel there): the files that finished
 * keep their results, and only the others run again in a fresh nested VM.
 */
import { appendFileSync } from 'node:fs';
import { relative } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

export default class ModuleResultsReporter implements Reporter {
  onTestModuleEnd(testModule: TestModule): void {
    const out = process.env['TSVMM_MODULES_FILE'];
    if (out === undefined) return;
    const count = (state: 'passed' | 'failed' | 'skipped'): number => [...testModule.children.allTests(state)].length;
    // A file whose set-up failed may have no failed test of its own: it still failed.
    const failed = count('failed') || (testModule.errors().length > 0 ? 1 : 0);
    const line = { file: relative(process.cwd(), testModule.moduleId), passed: count('passed'), failed, skipped: count('skipped') };
    appendFileSync(out, `${JSON.stringify(line)}\n`);
  }
}
