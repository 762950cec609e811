/**
 * The promised failures of the `tsvmm` command line that come before KVM is opened: each is one
 * clear line on stderr (no stack trace, nothing on stdout) and a non-zero status — 2 for a usage
 * error, 1 when tsvmm itself cannot do what was asked (src/vmm/exit-status.ts). The failures that
 * need /dev/kvm are in test/integration/cli-errors.test.ts.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { EXIT_STATUS } from '../../src/vmm/exit-status.js';
import { expectTsvmmFailure as tsvmm } from '../support/cli-failure.js';
import { tinyElf } from '../support/tsvmm-process.js';

const USAGE = EXIT_STATUS.usage;
const VMM_ERROR = EXIT_STATUS.vmmError;

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-cli-usage-'));
chmodSync(dir, 0o755);
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

  it('--serial tty and --console tty together (one terminal, as Cloud Hypervisor)', () =>
    tsvmm([...k, '--serial', 'tty', '--console', 'tty'], USAGE, /^tsvmm: --serial and --console are both Tty: only one port can use the terminal/m));

  it.each([
    [['--fs', 'tag=t,socket=/tmp/fs.sock'], /^tsvmm: --fs: not supported yet: tsvmm has no virtio-fs device yet$/m],
    [['--pmem', 'file=/tmp/p'], /^tsvmm: --pmem: not supported yet: tsvmm has no persistent-memory device yet$/m],
    [['--firmware', '/fw'], /^tsvmm: --firmware: not supported yet: tsvmm boots kernels directly, without firmware$/m],
    [['--seccomp', 'true'], /^tsvmm: --seccomp true: not supported yet: tsvmm has no seccomp filter \(only --seccomp false/m],
  ])('Cloud Hypervisor flags tsvmm cannot honour yet: %j', (flags, message) => tsvmm([...k, ...flags], USAGE, message));

  it('--seccomp false is accepted (tsvmm has no filter to turn off)', () =>
    tsvmm(['--kernel', join(dir, 'no-such-kernel'), '--seccomp', 'false'], VMM_ERROR, /cannot read kernel \S+no-such-kernel: no such file$/m));

  it('--vsock without a socket, with a CID the guest cannot have, or named like a disk', async () => {
    await tsvmm([...k, '--vsock', 'cid=3'], USAGE, /^tsvmm: --vsock: cid= and socket= are required, e\.g\. cid=3,socket=\/run\/vm\.vsock$/m);
    await tsvmm([...k, '--vsock', 'cid=2,socket=/tmp/v.sock'], USAGE, /^tsvmm: --vsock cid: /m);
    await tsvmm([...k, '--disk', 'path=/tmp/d,id=x', '--vsock', 'cid=3,socket=/tmp/v.sock,id=x'], USAGE, /^tsvmm: --vsock id: "x" is a disk's id$/m);
  });

  it('--net with a tap and an fd, a multicast MAC, a key tsvmm has nothing behind, or named like a disk', async () => {
    await tsvmm([...k, '--net', 'tap=tap0,fd=3'], USAGE, /^tsvmm: --net fd: give tap= \(a host interface to open\) or fd= \(an inherited open tap\), not both$/m);
    await tsvmm([...k, '--net', 'tap=tap0,mac=01:00:5e:00:00:01'], USAGE, /^tsvmm: --net mac: "01:00:5e:00:00:01" is a multicast address/m);
    await tsvmm([...k, '--net', 'tap=tap0,mtu=9000'], USAGE, /^tsvmm: --net mtu: not supported yet: tsvmm does not set the MTU$/m);
    await tsvmm([...k, '--disk', 'path=/tmp/d,id=x', '--net', 'tap=tap0,id=x'], USAGE, /^tsvmm: --net id: "x" is a disk's id$/m);
  });

  it('--console with an unknown mode', () =>
    tsvmm([...k, '--console', 'pipe'], USAGE, /^tsvmm: --console: "pipe" must be tty, pty, file=PATH, socket=PATH, socket, null or off$/m));

  it('--event-monitor without path= or fd=', () =>
    tsvmm([...k, '--event-monitor', '/tmp/e'], USAGE, /^tsvmm: --event-monitor: "\/tmp\/e" must be path=PATH or fd=N$/m));

  it('--log-level together with -v', () =>
    tsvmm([...k, '--log-level', 'info', '-v'], USAGE, /^tsvmm: give --log-level or -v, not both$/m));

  it('--serial with an unknown mode', () =>
    tsvmm([...k, '--serial', 'pipe'], USAGE, /--serial: "pipe" must be tty, pty, file=PATH, socket=PATH, socket, null or off/));

  it('--serial socket= in a directory that does not exist', () =>
    tsvmm([...k, '--serial', 'socket=/nonexistent-dir/s.sock'], VMM_ERROR, /cannot create serial socket \/nonexistent-dir\/s.sock: directory \/nonexistent-dir does not exist/));

  it('--log-level with an unknown level', () =>
    tsvmm([...k, '--log-level', 'loud'], USAGE, /Invalid values: Argument: log-level, Given: "loud", Choices: "error", "warn", "info", "debug"$/m));
});

describe('an unreadable kernel file is refused before the VM starts', () => {
  // src/vmm/exit-status.ts documents "cannot read the kernel" as a VMM error (status 1); see the
  // report that accompanies this test about the VM builder (src/vmm/builder.ts) raising it as a ConfigError (status 2).
  it('a missing file', () => tsvmm(['--kernel', join(dir, 'no-such-kernel')], VMM_ERROR, /cannot read kernel \S+no-such-kernel: no such file$/m));

  it('a directory', () => tsvmm(['--kernel', dir], VMM_ERROR, /cannot read kernel \S+: is a directory$/m));
});
