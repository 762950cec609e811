import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { main } from '../../src/cli/tsvmm-remote.js';
import { startHarness, TINY_CONFIG, type Harness } from '../vmm/api/helpers.js';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.stop();
});

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

type FakeStdin = PassThrough & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };

async function remote(args: string[], opts: { stdin?: FakeStdin; signal?: AbortSignal; onStdout?: (s: string) => void } = {}): Promise<Run> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => {
    out += c.toString();
    opts.onStdout?.(out);
  });
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const stdin = opts.stdin ?? new PassThrough();
  const io = { stdin, stdout, stderr, ...(opts.signal === undefined ? {} : { signal: opts.signal }) };
  const status = await main(['--api-socket', h.socketPath, ...args], io);
  return { status, stdout: out, stderr: err };
}

describe('commands', () => {
  test('ping: JSON as ch-remote prints it by default (and with --json), text with --human', async () => {
    for (const args of [['ping'], ['--json', 'ping']]) {
      const json = await remote(args);
      expect(json.status).toBe(0);
      expect(JSON.parse(json.stdout)).toMatchObject({ pid: process.pid, version: '0.1.0' });
    }
    const human = await remote(['--human', 'ping']);
    expect(human).toEqual({ status: 0, stdout: `tsvmm 0.1.0 (build test-double), pid ${process.pid}, features: fake\n`, stderr: '' });
  });

  test('create FILE.json, boot, info, counters, pause, snapshot, resume, reboot, shutdown', async () => {
    const file = join(h.dir, 'vm.json');
    writeFileSync(file, JSON.stringify({ ...TINY_CONFIG, disks: [{ path: '/d.qcow2', readonly: true, format: 'qcow2' }] }));
    expect(await remote(['create', file])).toEqual({ status: 0, stdout: '', stderr: '' });
    expect((await remote(['boot'])).status).toBe(0);
    const info = await remote(['--human', 'info']);
    expect(info.stdout).toBe(
      [
        'state:   Running',
        'vcpus:   1 (max 1)',
        'memory:  64 MiB (actual 64 MiB)',
        'kernel:  /images/tiny.elf',
        'cmdline: tiny.ticks',
        '_disk0:  /d.qcow2 (read-only, qcow2)',
        'serial:  Socket',
        'console: Tty',
        'rng:     /dev/urandom',
        '',
      ].join('\n'),
    );
    expect(JSON.parse((await remote(['info'])).stdout).state).toBe('Running');
    expect((await remote(['--human', 'counters'])).stdout).toBe('serial.tx_bytes 0\nvcpu0.io 3\nvcpu0.mmio 1\n');
    expect(JSON.parse((await remote(['counters'])).stdout)).toEqual({ vcpu0: { io: 3, mmio: 1 }, serial: { tx_bytes: 0 } });
    expect((await remote(['pause'])).status).toBe(0);
    expect((await remote(['snapshot', 'file:///tmp/snap-a'])).status).toBe(0);
    expect((await remote(['snapshot', '/tmp/snap b'])).status).toBe(0);
    expect(h.vmm.snapshots.map((s) => s.destination_url)).toEqual(['file:///tmp/snap-a', 'file:///tmp/snap%20b']);
    for (const cmd of ['resume', 'reboot', 'shutdown']) expect((await remote([cmd])).status, cmd).toBe(0);
    expect(h.vmm.state).toBe('Shutdown');
    expect((await remote(['delete'])).status).toBe(0);
    expect(h.vmm.state).toBeUndefined();
  });

  test('create reads the config from stdin with - or no file', async () => {
    for (const args of [['create', '-'], ['create']]) {
      const stdin = new PassThrough();
      stdin.end(JSON.stringify(TINY_CONFIG));
      expect(await remote(args, { stdin })).toEqual({ status: 0, stdout: '', stderr: '' });
      expect(h.vmm.state).toBe('Created');
      expect((await remote(['delete'])).status).toBe(0);
    }
    const bad = new PassThrough();
    bad.end('{"cpus": ');
    expect(await remote(['create'], { stdin: bad })).toMatchObject({ status: 2, stderr: expect.stringMatching(/^tsvmm-remote: stdin is not valid JSON: /) });
  });

  test('restore with Cloud Hypervisor k=v syntax', async () => {
    h.vmm.snapshots.push({ destination_url: 'file:///snaps/x' });
    expect((await remote(['restore', 'source_url=file:///snaps/x,prefault=on'])).status).toBe(0);
    expect(h.vmm.state).toBe('Paused');
    const bad = await remote(['restore', 'source_url=file:///s,fast=yes']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown key "fast"/);
  });

  test('shutdown-vmm ends the VMM', async () => {
    expect((await remote(['shutdown-vmm'])).status).toBe(0);
    await expect.poll(() => h.vmm.shutdownVmmCalls).toBe(1);
  });

  test('events prints each event as a line until interrupted', async () => {
    const abort = new AbortController();
    let lines: string[] = [];
    const running = remote(['events'], {
      signal: abort.signal,
      onStdout: (s) => {
        lines = s.trim().split('\n');
      },
    });
    await expect.poll(() => h.vmm.subscriberCount).toBe(1);
    await h.vmm.create(TINY_CONFIG as never);
    h.vmm.emit('device', 'tick');
    await expect.poll(() => lines.length).toBe(2);
    expect(lines[0]).toBe('0.000s vm created {"seq":0}');
    expect(lines[1]).toBe('1.000s device tick {"seq":1}');
    abort.abort();
    expect((await running).status).toBe(0);
    await expect.poll(() => h.vmm.subscriberCount).toBe(0);
  });

  test('console: pipes bytes both ways, Ctrl-] detaches, the TTY is restored', async () => {
    await h.vmm.create(TINY_CONFIG as never);
    const stdin: FakeStdin = new PassThrough();
    const modes: boolean[] = [];
    stdin.isTTY = true;
    stdin.setRawMode = (raw: boolean) => modes.push(raw);
    let out = '';
    const running = remote(['console'], { stdin, onStdout: (s) => (out = s) });
    await expect.poll(() => h.vmm.consoleIsAttached).toBe(true);
    stdin.write('ls\r');
    await expect.poll(() => out).toBe('echo:ls\r');
    stdin.write(Buffer.from([0x61, 0x1d, 0x62])); // "a", Ctrl-], "b": "b" is never sent
    const r = await running;
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/Escape character is '\^\]'/);
    expect(modes).toEqual([true, false]);
    await expect.poll(() => h.vmm.consoleIsAttached).toBe(false);
    expect(Buffer.from(h.vmm.consoleInput).toString()).toBe('ls\ra');
    expect(h.vmm.state).toBe('Created');
  });
});

describe('Cloud Hypervisor verbs', () => {
  test('power-button presses the running VM\'s ACPI power button', async () => {
    await h.vmm.create(TINY_CONFIG as never);
    expect(await remote(['power-button'])).toMatchObject({ status: 1, stderr: expect.stringMatching(/cannot press the power button of a VM that is Created/) });
    await h.vmm.boot();
    expect(await remote(['power-button'])).toEqual({ status: 0, stdout: '', stderr: '' });
    expect(h.vmm.powerButtonPresses).toBe(1);
  });

  test('console --port serial|console asks for that port; another value is a usage error', async () => {
    await h.vmm.create(TINY_CONFIG as never);
    const stdin = new PassThrough();
    const running = remote(['console', '--port', 'serial'], { stdin });
    await expect.poll(() => h.vmm.consoleIsAttached).toBe(true);
    stdin.end();
    // From a pipe too, one line says the console is attached (scripts wait for it).
    expect(await running).toEqual({ status: 0, stdout: '', stderr: 'Connected to the guest console.\n' });
    expect(h.vmm.consolePorts).toEqual(['serial']);
    expect(await remote(['console', '--port', 'hvc0'])).toMatchObject({ status: 2, stderr: 'tsvmm-remote: console --port: "hvc0" must be serial or console\n' });
  });

  test.each([
    [['add-disk', 'path=/d.raw'], /^tsvmm-remote: add-disk: not supported yet: tsvmm has no device hotplug yet\n$/],
    [['remove-device', '_disk0'], /^tsvmm-remote: remove-device: not supported yet: tsvmm has no device hotplug yet\n$/],
    [['resize', '--cpus', '4'], /^tsvmm-remote: resize: not supported yet: tsvmm has no vCPU or memory hotplug yet/],
    [['send-migration', 'unix:/tmp/m.sock'], /^tsvmm-remote: send-migration: not supported yet: tsvmm has no live migration yet/],
  ])('%j: ch-remote verbs tsvmm cannot do yet say so (exit 2)', async (args, message) => {
    const r = await remote(args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});

describe('failures', () => {
  test('a VMM error is one line on stderr and exit 1', async () => {
    expect(await remote(['info'])).toEqual({
      status: 1,
      stdout: '',
      stderr: 'tsvmm-remote: no VM has been created: send vm.create (or vm.restore) first\n',
    });
    await h.vmm.create(TINY_CONFIG as never);
    const r = await remote(['resume']);
    expect(r).toMatchObject({ status: 1, stderr: 'tsvmm-remote: cannot resume a VM that is Created (needs Paused)\n' });
    const file = join(h.dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ payload: { kernel: '/k' }, cpus: { boot_vcpus: 'two' } }));
    // The body is validated before the VMM sees it, so the field error wins over the state error.
    expect(await remote(['create', file])).toMatchObject({ status: 1, stderr: 'tsvmm-remote: cpus.boot_vcpus: expected an integer, got string "two"\n' });
  });

  test('usage errors exit 2', async () => {
    for (const args of [[], ['frobnicate'], ['snapshot'], ['snapshot', 'http://x'], ['restore', 'source_url=file:///s,x=1'], ['create', '/nonexistent.json']]) {
      const r = await remote(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/^tsvmm-remote: .+\n$/);
    }
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let err = '';
    stderr.on('data', (c: Buffer) => (err += c.toString()));
    expect(await main(['ping'], { stdin: new PassThrough(), stdout, stderr })).toBe(2);
    expect(err).toMatch(/api-socket/);
  });

  test('cannot connect: a clear message naming the socket', async () => {
    const missing = join(h.dir, 'nobody.sock');
    const stderr = new PassThrough();
    let err = '';
    stderr.on('data', (c: Buffer) => (err += c.toString()));
    const status = await main(['--api-socket', missing, 'ping'], { stdin: new PassThrough(), stdout: new PassThrough(), stderr });
    expect(status).toBe(1);
    expect(err).toMatch(new RegExp(`^tsvmm-remote: cannot reach the tsvmm API at ${missing}: .*ENOENT.* \\(is tsvmm running with --api-socket ${missing}\\?\\)\\n$`));
  });
});

test('the compiled binary runs (tsc to a temporary build)', async () => {
  const run = promisify(execFile);
  const root = resolve(import.meta.dirname, '../..');
  const out = mkdtempSync(join(tmpdir(), 'tsvmm-remote-build-'));
  try {
    // Only this entry point and what it imports: other modules in the tree may be mid-edit.
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    await run(process.execPath, [tsc, '--outDir', join(out, 'dist'), '--rootDir', join(root, 'src'), '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
      '--target', 'ES2022', '--lib', 'ES2024', '--strict', '--skipLibCheck', '--types', 'node', join(root, 'src/cli/tsvmm-remote.ts')], { cwd: root });
    writeFileSync(join(out, 'package.json'), '{"type":"module"}');
    mkdirSync(join(out, 'dist'), { recursive: true });
    symlinkSync(join(root, 'node_modules'), join(out, 'node_modules'));
    const bin = join(out, 'dist/cli/tsvmm-remote.js');
    const ping = await run(process.execPath, [bin, '--api-socket', h.socketPath, '--json', 'ping']);
    expect(JSON.parse(ping.stdout).pid).toBe(process.pid);
    const failed = await run(process.execPath, [bin, '--api-socket', h.socketPath, 'pause']).catch((e: { code: number; stderr: string }) => e);
    expect(failed).toMatchObject({ code: 1, stderr: 'tsvmm-remote: no VM has been created: send vm.create (or vm.restore) first\n' });
    const usage = await run(process.execPath, [bin, 'ping']).catch((e: { code: number; stderr: string }) => e);
    expect(usage).toMatchObject({ code: 2 });
    const help = await run(process.execPath, [bin, '--help']);
    expect(help.stdout).toMatch(/tsvmm-remote --api-socket PATH <command>/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}, 120_000);
