#!/usr/bin/env node
// `npm test`: the one test command. The `unit` project runs natively; the `kvm` project (tests that
// boot guests, see vitest.config.ts) runs on /dev/kvm when the host has it, and otherwise nested,
// inside a QEMU TCG VM that offers KVM (tools/nested/run.mjs). A host with neither gets one line
// saying what to install. Ends with one summary line per tier and a total:
// `tests: N passed, N failed, N skipped`.
//
//   npm test                      every test
//   npm test -- FILE...           just those files (each in its tier, nested where needed)
//   npm test -- -t NAME FILE...   other arguments go to vitest as they are
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kvmMode, NO_KVM_MESSAGE, runNested } from './nested/run.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const vitest = join(repo, 'node_modules', 'vitest', 'vitest.mjs');
/** vitest options that take a value as the next argument (everything else that is not an option is a file filter). */
const OPTIONS_WITH_VALUE = new Set(['-t', '--testNamePattern', '--reporter', '--outputFile', '--bail', '--retry', '--shard', '--maxWorkers', '--testTimeout', '--hookTimeout', '--seed']);

function splitArgs(args) {
  const filters = [];
  const options = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a.startsWith('-')) {
      options.push(a);
      if (OPTIONS_WITH_VALUE.has(a) && i + 1 < args.length) options.push(args[++i]);
    } else filters.push(a);
  }
  return { filters, options };
}

/** The project's files that match the filters (vitest's own matching), relative to the repo. */
function projectFiles(project, filters) {
  const r = spawnSync(process.execPath, [vitest, 'list', '--filesOnly', '--project', project, ...filters], {
    cwd: repo, encoding: 'utf8',
  });
  return r.stdout.split('\n').filter((line) => line.startsWith(`[${project}] `)).map((line) => line.slice(project.length + 3).trim());
}

function vitestArgs(project, jsonFile, options, filters) {
  return [
    'run', '--project', project, '--reporter=verbose', '--reporter=json', `--outputFile.json=${jsonFile}`,
    '--reporter=./test/support/retried-reporter.ts', '--reporter=./test/support/module-results-reporter.ts', ...options, ...filters,
  ];
}

function runNative(args) {
  return new Promise((res) => {
    const child = spawn(process.execPath, [vitest, ...args], { cwd: repo, stdio: 'inherit' });
    child.on('exit', (code, signal) => res(code ?? (signal ? 128 : 1)));
  });
}

function readCounts(jsonFile) {
  try {
    const r = JSON.parse(readFileSync(jsonFile, 'utf8'));
    return { passed: r.numPassedTests, failed: r.numFailedTests, skipped: r.numPendingTests + r.numTodoTests };
  } catch {
    return undefined;
  }
}

/** Per-file results test/support/module-results-reporter.ts recorded, by file (the last record wins). */
function readModules(file) {
  const byFile = new Map();
  if (!existsSync(file)) return byFile;
  for (const l of readFileSync(file, 'utf8').split('\n')) if (l !== '') { const r = JSON.parse(l); byFile.set(r.file, r); }
  return byFile;
}

/**
 * Seconds vitest may take to print its first line in the nested VM: its header comes within a
 * minute even nested, and a nested host was seen to print nothing at all after "kvm ready" (stuck
 * before vitest started); waiting the whole 15-minute idle limit for that was a red run.
 */
const FIRST_OUTPUT_S = 300;

/** A new nested VM for unfinished files is started only with at least this much of the budget left. */
const MIN_RERUN_S = 600;

/** The kvm tier's files that have no result yet: after a crash of the nested host, they run again. */
function unfinishedFiles(files, finished) {
  return files.filter((f) => !finished.has(f));
}

/** The tests test/support/retried-reporter.ts recorded as run a second time. */
function readRetried(file) {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
}

async function main() {
  const { filters, options } = splitArgs(process.argv.slice(2));
  // Results go where both this host and the nested VM can write (the VM's /tmp is its own tmpfs).
  mkdirSync('/var/tmp/tsvmm-test', { recursive: true });
  const resultsDir = mkdtempSync('/var/tmp/tsvmm-test/run-');
  // The reporter runs wherever vitest does (nested too: the environment is passed on).
  process.env.TSVMM_RETRIED_FILE = join(resultsDir, 'retried.jsonl');
  process.env.TSVMM_MODULES_FILE = join(resultsDir, 'modules.jsonl');
  const tiers = [];
  const notes = [];

  if (filters.length === 0 || projectFiles('unit', filters).length > 0) {
    const json = join(resultsDir, 'unit.json');
    const started = Date.now();
    const status = await runNative(vitestArgs('unit', json, options, filters));
    tiers.push({ name: 'unit (native)', status, seconds: (Date.now() - started) / 1000, counts: readCounts(json) });
  }
  const kvmFiles = projectFiles('kvm', filters);
  if (kvmFiles.length > 0) {
    const json = join(resultsDir, 'kvm.json');
    const mode = kvmMode();
    const started = Date.now();
    let status;
    let counts;
    if (mode === 'none') {
      process.stderr.write(`npm test: ${NO_KVM_MESSAGE}\n`);
      status = 2;
    } else if (mode === 'direct') {
      status = await runNative(vitestArgs('kvm', json, options, filters));
    } else {
      // The kvm tier runs in one nested VM: its watchdog allows 80 minutes in all (CI's hard
      // limit is 90) and 15 without a line of output (vitest prints one per test).
      const budgetS = 4800;
      const elapsedS = () => (Date.now() - started) / 1000;
      status = await runNested([process.execPath, vitest, ...vitestArgs('kvm', json, options, filters)], { cwd: repo, timeoutS: budgetS, firstOutputS: FIRST_OUTPUT_S });
      // 125: the nested host died without the job's status. Its kernel has crashed under QEMU's
      // TCG in the middle of a run (a kernel stack overflow in exception entry, not a test's
      // doing), locked up (a CPU reported stuck for minutes), or hung: the files that finished
      // keep their results; the others run again in a new nested VM, as often as time allows.
      let rerun = false;
      for (let again = unfinishedFiles(kvmFiles, readModules(process.env.TSVMM_MODULES_FILE));
        status === 125 && again.length > 0 && budgetS - elapsedS() > MIN_RERUN_S;
        again = unfinishedFiles(kvmFiles, readModules(process.env.TSVMM_MODULES_FILE))) {
        const note = `the nested host died after ${elapsedS().toFixed(0)} s; ${again.length} of ${kvmFiles.length} kvm files had not finished and ran again in a new nested VM: ${again.join(', ')}`;
        process.stderr.write(`npm test: ${note}\n`);
        notes.push(note);
        rmSync(json, { force: true });
        rerun = true;
        status = await runNested([process.execPath, vitest, ...vitestArgs('kvm', json, options, again)], { cwd: repo, timeoutS: Math.floor(budgetS - elapsedS()), firstOutputS: FIRST_OUTPUT_S });
      }
      if (rerun) {
        // The unit tier's files are in the same record: only the kvm files count here.
        const modules = [...readModules(process.env.TSVMM_MODULES_FILE).values()].filter((m) => kvmFiles.includes(m.file));
        const sum = (k) => modules.reduce((n, m) => n + m[k], 0);
        // Every file must have its result, or the tier did not complete.
        if (unfinishedFiles(kvmFiles, new Set(modules.map((m) => m.file))).length === 0) counts = { passed: sum('passed'), failed: sum('failed'), skipped: sum('skipped') };
        else if (status === 0) status = 125;
      }
    }
    tiers.push({ name: `kvm (${mode === 'nested' ? 'nested KVM under QEMU TCG' : mode === 'direct' ? '/dev/kvm' : 'no KVM'})`, status, seconds: (Date.now() - started) / 1000, counts: counts ?? readCounts(json) });
  }
  const retried = readRetried(process.env.TSVMM_RETRIED_FILE);
  rmSync(resultsDir, { recursive: true, force: true });
  if (tiers.length === 0) {
    process.stderr.write(`npm test: no test file matches ${filters.join(' ')}\n`);
    process.exitCode = 1;
    return;
  }

  const total = { passed: 0, failed: 0, skipped: 0 };
  process.stdout.write('\n');
  for (const t of tiers) {
    const c = t.counts ?? { passed: 0, failed: 0, skipped: 0 };
    for (const k of Object.keys(total)) total[k] += c[k];
    const result = t.counts ? `${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped` : 'no results (the run did not complete)';
    process.stdout.write(`tier ${t.name}: ${result} in ${t.seconds.toFixed(0)} s (exit ${t.status})\n`);
  }
  for (const r of retried) process.stdout.write(`retried: ${r.file} > ${r.name}: ${r.state} on retry (first failure: ${r.firstFailure.split('\n')[0]})\n`);
  for (const n of notes) process.stdout.write(`rerun: ${n}\n`);
  const ok = tiers.every((t) => t.status === 0 && t.counts);
  if (!ok && total.failed === 0) total.failed = 1; // a tier that died counts as a failure
  const flaky = retried.filter((r) => r.state === 'passed').length;
  process.stdout.write(`tests: ${total.passed} passed${flaky > 0 ? ` (${flaky} only on a retry)` : ''}, ${total.failed} failed, ${total.skipped} skipped\n`);
  process.exitCode = ok ? 0 : 1;
}

main().catch((e) => {
  process.stderr.write(`npm test: ${e.message}\n`);
  process.exitCode = 2;
});
