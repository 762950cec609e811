/**
 * The promised failures of the `tsvmm` command line that involve KVM or the guest's image: each is
 * one clear line on stderr (no stack trace, nothing on stdout) and status 1 (src/vmm/exit-status.ts).
 * Usage errors, found before KVM is opened, are in test/cli/tsvmm-usage.test.ts.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { EXIT_STATUS } from '../../src/vmm/exit-status.js';
import { expectFailure, expectTsvmmFailure as tsvmm } from '../support/cli-failure.js';
import { tinyElf, tsvmmBin } from '../support/tsvmm-process.js';

const VMM_ERROR = EXIT_STATUS.vmmError;

/** `tsvmm ARGS` as user nobody, who may not open /dev/kvm or root's private files. */
const asNobody = (args: string[], status: number, message: RegExp): Promise<void> =>
  expectFailure('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, tsvmmBin, ...args], status, message);

const isRoot = process.getuid?.() === 0;

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-cli-errors-'));
chmodSync(dir, 0o755); // nobody must reach the files it is allowed to read
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('an unreadable kernel file is refused before the VM starts', () => {
  it.skipIf(!isRoot)('a file the user may not read (run as nobody)', () => {
    const file = join(dir, 'private.elf');
    copyFileSync(tinyElf, file);
    chmodSync(file, 0o600);
    return asNobody(['--kernel', file], VMM_ERROR, /cannot read kernel \S+private\.elf: permission denied$/m);
  });
});

describe.skipIf(!isRoot)('no permission on /dev/kvm', () => {
  it('says what to do and exits with status 1', () =>
    asNobody(['--kernel', tinyElf], VMM_ERROR, /^tsvmm: permission denied on \/dev\/kvm: add your user to the kvm group or run as root$/m));
});

describe('unknown or broken kernel images exit with status 1', () => {
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

describe('RAM beyond what the host can give exits with status 1', () => {
  it('more than one region of this Node.js can map (--memory size=1000G)', () =>
    tsvmm(['--kernel', tinyElf, '--memory', 'size=1000G'], VMM_ERROR,
      /RAM region 1: \d+ MiB exceeds the \d+ MiB a region can have in this Node\.js \(guest RAM is limited to \d+ GiB\)/));

  it('more than the address space the process may use (ulimit -v)', () =>
    expectFailure('sh', ['-c', 'ulimit -v 3000000 && exec "$0" "$@"', process.execPath, tsvmmBin, '--kernel', tinyElf, '--memory', 'size=6G'], VMM_ERROR,
      /cannot allocate 6144 MiB of guest RAM: the host is out of memory or address space \(check free memory, ulimit -v, vm\.overcommit_memory\)/));
});
