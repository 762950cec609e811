/**
 * The promised failures of the `tsvmm` command line: each is one clear line on stderr (no stack
 * trace, nothing on stdout) and a non-zero status — 2 for a usage error, 1 when tsvmm itself
 * cannot do what was asked (src/vmm/exit-status.ts).
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/vmm/exit-status.js';
import { announceKvmSkip, hasKvm } from '../support/kvm.js';
import { run, tinyElf, tsvmmBin } from '../support/tsvmm-process.js';

announceKvmSkip('test/integration/cli-errors.test.ts');

const USAGE = EXIT_STATUS.usage;
const VMM_ERROR = EXIT_STATUS.vmmError;

/** Runs a command line that must fail before any guest output, and checks the shape of the failure. */
async function expectFailure(cmd: string, args: string[], status: number, message: RegExp): Promise<void> {
  const r = await run(cmd, args, { timeoutMs: 30_000 });
  const shown = `status ${r.code}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`;
  expect(r.stderr, shown).toMatch(/^tsvmm: [^\n]+\n$/); // exactly one line, prefixed
  expect(r.stderr, shown).toMatch(message);
  expect(r.stderr, shown).not.toMatch(/\n\s+at |Error:|node:internal/); // no stack trace or raw exception
  expect(r.stdout, shown).toBe('');
  expect(r.code, shown).toBe(status);
}

const tsvmm = (args: string[], status: number, message: RegExp): Promise<void> =>
  expectFailure(process.execPath, [tsvmmBin, ...args], status, message);

/** `tsvmm ARGS` as user nobody, who may not open /dev/kvm or root's private files. */
const asNobody = (args: string[], status: number, message: RegExp): Promise<void> =>
  expectFailure('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, tsvmmBin, ...args], status, message);

const isRoot = process.getuid?.() === 0;

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-cli-errors-'));
chmodSync(dir, 0o755); // nobody must reach the files it is allowed to read
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('usage errors exit with status 2', () => {
  const k = ['--kernel', tinyElf];

  it('nothing to do', () => tsvmm([], USAGE, /^tsvmm: nothing to do: give --kernel FILE to boot, --restore source_url=\.\.\. to restore, or --api-socket PATH/));

  it('an unknown flag', () => tsvmm([...k, '--frobnicate'], USAGE, /Unknown argument: frobnicate/));

  it('--kernel together with --restore', () =>
    tsvmm([...k, '--restore', `source_url=file://${dir}`], USAGE, /--kernel and --restore are exclusive/));

  it.each([
    ['size=12Q', /--memory size: "12Q" is not a size \(use e\.g\. 512M, 4G/],
    ['size=1K', /--memory size: 1024 bytes is too small \(at least 2M\)/],
    ['size=0', /--memory size: 0 bytes is too small \(at least 2M\)/],
    ['size=', /--memory size: "" is not a size/],
    ['size=4097K', /--memory size: must be a multiple of 4K/],
    ['size=2T', /--memory size: \d+ bytes is more than tsvmm supports \(1T\)/],
    ['bytes=1G', /--memory: unknown key "bytes" \(known keys: size\)/],
  ])('--memory %s', (memory, message) => tsvmm([...k, '--memory', memory], USAGE, message));

  it.each([
    ['boot=0', /--cpus boot: 0 is out of range 1\.\.254/],
    ['boot=abc', /--cpus boot: "abc" is not a whole number/],
    ['boot=999', /--cpus boot: 999 is out of range 1\.\.254/],
    ['boot=-1', /--cpus boot: "-1" is not a whole number/],
    ['boot=4,max=2', /--cpus: max \(2\) is below boot \(4\)/],
  ])('--cpus %s', (cpus, message) => tsvmm([...k, '--cpus', cpus], USAGE, message));

  it.each([
    ['--kernel', ['--kernel'], /^tsvmm: --kernel needs a value$/m],
    ['--initramfs', [...k, '--initramfs'], /^tsvmm: --initramfs needs a value$/m],
    ['--api-socket', ['--api-socket'], /^tsvmm: --api-socket needs a value$/m],
  ])('%s without a value', (_flag, args, message) => tsvmm(args, USAGE, message));

  it.each([
    ['--kernel', [...k, ...k], /^tsvmm: --kernel is given more than once$/m],
    ['--memory', [...k, '--memory', '128M', '--memory', '256M'], /^tsvmm: --memory is given more than once$/m],
    ['--cpus', [...k, '--cpus', '1', '--cpus', '2'], /^tsvmm: --cpus is given more than once$/m],
  ])('%s given twice', (_flag, args, message) => tsvmm(args, USAGE, message));

  it('--disk without a value', () => tsvmm([...k, '--disk'], USAGE, /--disk: a value is required: path=FILE/));

  it('--disk without a path', () => tsvmm([...k, '--disk', 'readonly=on'], USAGE, /--disk: path= is required/));

  it('--serial with an unknown mode', () =>
    tsvmm([...k, '--serial', 'pipe'], USAGE, /--serial: "pipe" must be tty, file=PATH, socket, null or off/));

  it('--log-level with an unknown level', () =>
    tsvmm([...k, '--log-level', 'loud'], USAGE, /Invalid values: Argument: log-level, Given: "loud", Choices: "error", "warn", "info", "debug"$/m));
});

describe('an unreadable kernel file is refused before the VM starts', () => {
  // src/vmm/exit-status.ts documents "cannot read the kernel" as a VMM error (status 1); see the
  // report that accompanies this test about vm.ts raising it as a ConfigError (status 2).
  it('a missing file', () => tsvmm(['--kernel', join(dir, 'no-such-kernel')], VMM_ERROR, /cannot read kernel \S+no-such-kernel: no such file$/m));

  it('a directory', () => tsvmm(['--kernel', dir], VMM_ERROR, /cannot read kernel \S+: is a directory$/m));

  it.skipIf(!isRoot || !hasKvm)('a file the user may not read (run as nobody)', () => {
    const file = join(dir, 'private.elf');
    copyFileSync(tinyElf, file);
    chmodSync(file, 0o600);
    return asNobody(['--kernel', file], VMM_ERROR, /cannot read kernel \S+private\.elf: permission denied$/m);
  });
});

describe.skipIf(!isRoot || !hasKvm)('no permission on /dev/kvm', () => {
  it('says what to do and exits with status 1', () =>
    asNobody(['--kernel', tinyElf], VMM_ERROR, /^tsvmm: permission denied on \/dev\/kvm: add your user to the kvm group or run as root$/m));
});

describe.skipIf(!hasKvm)('unknown or broken kernel images exit with status 1', () => {
  const elf = readFileSync(tinyElf);
  const files: Record<string, Uint8Array> = {
    'random.bin': Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24),
    'empty.bin': new Uint8Array(0),
    'header-only.elf': elf.subarray(0, 100),
    'cut-segment.elf': elf.subarray(0, 3000),
  };
  mkdirSync(join(dir, 'images'), { recursive: true });
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, 'images', name), bytes);

  it.each([
    ['random.bin', /kernel image is neither an ELF vmlinux nor a bzImage \(no ELF magic, no "HdrS" at 0x202\)/],
    ['empty.bin', /kernel image is 0 bytes: empty or truncated/],
    ['header-only.elf', /ELF file is truncated: program headers run past the end/],
    ['cut-segment.elf', /ELF file is truncated: segment at 0x[0-9a-f]+ runs past the end/],
  ])('%s', (name, message) => tsvmm(['--kernel', join(dir, 'images', name)], VMM_ERROR, message));
});

describe.skipIf(!hasKvm)('RAM beyond what the host can give exits with status 1', () => {
  it('more than one region of this Node.js can map (--memory size=1000G)', () =>
    tsvmm(['--kernel', tinyElf, '--memory', 'size=1000G'], VMM_ERROR,
      /RAM region 1: \d+ MiB exceeds the \d+ MiB a region can have in this Node\.js \(guest RAM is limited to \d+ GiB\)/));

  it('more than the address space the process may use (ulimit -v)', () =>
    expectFailure('sh', ['-c', 'ulimit -v 3000000 && exec "$0" "$@"', process.execPath, tsvmmBin, '--kernel', tinyElf, '--memory', 'size=6G'], VMM_ERROR,
      /cannot allocate 6144 MiB of guest RAM: the host is out of memory or address space \(check free memory, ulimit -v, vm\.overcommit_memory\)/));
});
