import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { VmmEvent } from '../../src/vmm/controller.js';
import { raw } from '../vmm/api/helpers.js';
import { errorCode, RealVmm, sleep, type ConsoleTap } from '../vmm/api/real-tsvmm.js';
import { remoteBin, tinyElf } from '../support/tsvmm-process.js';
import { deadline } from '../support/timing.js';
import { curl } from '../support/curl.js';

/**
 * The control plane end to end: the real tsvmm binary booting the tiny guest, driven over its
 * API socket by raw HTTP, by curl and by the tsvmm-remote binary; the guest's own console output
 * (tick lines) is the witness that pause, resume, reboot and restore did what they said.
 */

const TICKS = 'tiny.ticks tiny.tick_ms=10';
// Not anchored: a reboot or shutdown can cut the old guest mid-line, so the new banner may
// follow the old guest's partial line on the console.
const BANNER = /tiny: boot=pvh cpus=1 /;

const get = (v: RealVmm, route: string) => raw(v.socketPath, 'GET', `/api/v1/${route}`);
const put = (v: RealVmm, route: string, body?: string) => raw(v.socketPath, 'PUT', `/api/v1/${route}`, body);
const fileUrl = (path: string) => pathToFileURL(path).href;

/** Waits for a new banner after line `from` and a tick after it (the guest came up again). */
async function expectFreshBoot(tap: ConsoleTap, from: number, v?: RealVmm): Promise<void> {
  const banner = await tap.waitForLine(BANNER, from).catch(async (err: Error) => {
    // Say whether the guest runs at all (exit counters) and what the VMM thinks.
    const state = v === undefined ? '' : JSON.stringify({ info: await v.client.info().catch((e: Error) => e.message), counters: await v.client.counters().catch((e: Error) => e.message), stderr: v.proc.stderr });
    throw new Error(`${err.message}; ${state}`);
  });
  const tick = await tap.waitForLine(/^tick \d+/, banner + 1);
  expect(tap.lines[tick]!.text).toBe('tick 1');
}

/** vmm.shutdown was accepted: the process ends with 0 and takes its socket file with it. */
async function expectVmmGone(v: RealVmm): Promise<void> {
  const end = await v.waitExit();
  expect(end, v.proc.stderr).toEqual({ code: 0, signal: null });
  expect(existsSync(v.socketPath)).toBe(false);
}

// Generous per-test limit: on a loaded 2-core host a reboot or boot can take seconds.
/** tsvmm-remote's JSON output, or an error saying how the command ended (a flaky run shows why). */
function remoteJson(r: { code: number | null; stdout: string; stderr: string }): unknown {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`tsvmm-remote printed no JSON: exit ${String(r.code)}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`);
  }
}

describe('control plane against the real VMM', { timeout: deadline(180_000) }, () => {
  let scratch: string;
  /** A snapshot made by an early test, restored into empty VMMs by a later one. */
  let snapshotDir: string | undefined;
  let snapshotLastTick = 0;
  /** The part of a line the guest had printed when the snapshot was taken ('' between lines). */
  let snapshotPendingLine = '';

  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'tsvmm-api-it-'));
  });
  afterAll(() => {
    rmSync(scratch, { recursive: true, force: true });
  });

  test('every route over raw HTTP and curl on a booted guest', async () => {
    const v = await RealVmm.start({ cmdline: TICKS, dir: scratch });
    const tap = await v.console();
    try {
      await tap.moreTicks(2);
      const ping = await curl(v.socketPath, 'GET', 'vmm.ping');
      expect(ping.status).toBe(200);
      expect(JSON.parse(ping.body)).toMatchObject({ pid: v.pid, version: expect.any(String) });

      const info = await get(v, 'vm.info');
      expect(info.status).toBe(200);
      expect(JSON.parse(info.body)).toMatchObject({ state: 'Running', config: { payload: { kernel: tinyElf, cmdline: TICKS }, serial: { mode: 'Socket' } } });
      const counters = await curl(v.socketPath, 'GET', 'vm.counters');
      expect(counters.status).toBe(200);
      expect((JSON.parse(counters.body) as Record<string, Record<string, number>>).vcpu0?.io).toBeGreaterThan(0);

      expect((await curl(v.socketPath, 'PUT', 'vm.pause')).status).toBe(204);
      const again = await put(v, 'vm.pause');
      expect([again.status, errorCode(again.body)]).toEqual([400, 'EINVALIDSTATE']);
      const dir = join(scratch, 'snap-raw');
      const snap = await curl(v.socketPath, 'PUT', 'vm.snapshot', JSON.stringify({ destination_url: fileUrl(dir) }));
      expect(snap.status, snap.body).toBe(204);
      expect(existsSync(join(dir, 'vm.json'))).toBe(true);
      snapshotDir = dir;
      // The guest is paused, but what it printed just before may still be on its way to the tap.
      await sleep(deadline(250));
      snapshotLastTick = tap.lastTick()!;
      snapshotPendingLine = tap.pendingLine;

      const beforeResume = tap.lines.length;
      expect((await put(v, 'vm.resume')).status).toBe(204);
      expect((await tap.moreTicks(1, beforeResume))[0]!.n).toBe(snapshotLastTick + 1);

      let mark = tap.lines.length;
      expect((await curl(v.socketPath, 'PUT', 'vm.reboot')).status).toBe(204);
      await expectFreshBoot(tap, mark, v);

      expect((await put(v, 'vm.shutdown')).status).toBe(204);
      expect(JSON.parse((await get(v, 'vm.info')).body).state).toBe('Shutdown');
      mark = tap.lines.length;
      expect((await put(v, 'vm.boot')).status).toBe(204);
      expect(JSON.parse((await get(v, 'vm.info')).body).state).toBe('Running');
      await expectFreshBoot(tap, mark, v);

      const create = await put(v, 'vm.create', JSON.stringify({ payload: { kernel: tinyElf } }));
      expect([create.status, errorCode(create.body)]).toEqual([400, 'EINVALIDSTATE']);

      expect((await curl(v.socketPath, 'PUT', 'vmm.shutdown')).status).toBe(204);
      await expectVmmGone(v);
    } finally {
      await tap.close();
      await v.stop();
    }
  });

  test('every route through tsvmm-remote, with JSON (the default, as ch-remote) and --human output and exit statuses', async () => {
    const v = await RealVmm.start({ cmdline: TICKS, dir: scratch });
    const tap = await v.console();
    try {
      await tap.moreTicks(1);
      const ping = await v.remote(['--human', 'ping']);
      expect(ping).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`^tsvmm \\S+ \\(build \\S+\\), pid ${v.pid}, features: `)) });
      expect(remoteJson(await v.remote(['ping']))).toMatchObject({ pid: v.pid });

      const info = await v.remote(['--human', 'info']);
      expect(info.code).toBe(0);
      expect(info.stdout).toMatch(/^state: +Running$/m);
      expect(info.stdout).toMatch(/^memory: +64 MiB \(actual 64 MiB\)$/m);
      expect(info.stdout).toMatch(new RegExp(`^cmdline: +${TICKS}$`, 'm'));
      expect(info.stdout).toMatch(/^serial: +Socket$/m);
      const infoJson = await v.remote(['info']);
      expect(remoteJson(infoJson)).toMatchObject({ state: 'Running', memory_actual_size: 64 << 20, config: { payload: { cmdline: TICKS } } });

      const counters = await v.remote(['--human', 'counters']);
      expect(counters.code).toBe(0);
      const io = Number(/^vcpu0\.io (\d+)$/m.exec(counters.stdout)?.[1]);
      expect(io).toBeGreaterThan(0);
      const countersJson = remoteJson(await v.remote(['counters'])) as Record<string, Record<string, number>>;
      expect(countersJson.vcpu0!.io).toBeGreaterThanOrEqual(io);

      expect(await v.remote(['pause'])).toEqual({ code: 0, stdout: '', stderr: '' });
      const twice = await v.remote(['pause']);
      expect(twice.code).toBe(1);
      expect(twice.stderr).toMatch(/^tsvmm-remote: cannot pause a VM that is Paused/);
      const dir = join(scratch, 'snap-remote');
      expect((await v.remote(['snapshot', fileUrl(dir)])).code).toBe(0);
      expect(existsSync(join(dir, 'vm.json'))).toBe(true);
      await sleep(deadline(250)); // let what the guest printed before the pause reach the tap
      const last = tap.lastTick()!;
      const beforeResume = tap.lines.length;
      expect((await v.remote(['resume'])).code).toBe(0);
      expect((await v.remote(['resume'])).code).toBe(1);
      expect((await tap.moreTicks(1, beforeResume))[0]!.n).toBe(last + 1);

      let mark = tap.lines.length;
      expect((await v.remote(['reboot'])).code).toBe(0);
      await expectFreshBoot(tap, mark, v);
      expect((await v.remote(['shutdown'])).code).toBe(0);
      expect((await v.remote(['--human', 'info'])).stdout).toMatch(/^state: +Shutdown$/m);
      mark = tap.lines.length;
      expect((await v.remote(['boot'])).code).toBe(0);
      await expectFreshBoot(tap, mark, v);
      expect((await v.remote(['boot'])).code).toBe(1);

      expect((await v.remote(['shutdown-vmm'])).code).toBe(0);
      await expectVmmGone(v);
      // Nothing listens any more: exit status 1 and a message that says so.
      const gone = await v.remote(['ping']);
      expect(gone.code).toBe(1);
      expect(gone.stderr).toMatch(/cannot reach the tsvmm API/);
    } finally {
      await tap.close();
      await v.stop();
    }
  });

  test('an empty VMM: create (a whole Cloud Hypervisor config over raw HTTP, a short one through tsvmm-remote) + boot', async () => {
    const config = { memory: { size: 64 << 20 }, payload: { kernel: tinyElf, cmdline: TICKS }, serial: { mode: 'Socket' } };
    const cfgFile = join(scratch, 'cfg.json');
    writeFileSync(cfgFile, JSON.stringify(config));
    // As ch-remote or an orchestrator serialises Cloud Hypervisor's VmConfig: every section.
    const chConfig = {
      cpus: { boot_vcpus: 1, max_vcpus: 1, topology: null, kvm_hyperv: false, max_phys_bits: 46, affinity: null, features: { amx: false } },
      memory: { size: 64 << 20, mergeable: false, hotplug_method: 'Acpi', hotplug_size: null, hotplugged_size: null, shared: false, hugepages: false, hugepage_size: null, prefault: false, zones: null, thp: true },
      payload: { firmware: null, kernel: tinyElf, cmdline: TICKS, initramfs: null, igvm: null, host_data: null },
      disks: null, net: null, rng: { src: '/dev/urandom', iommu: false }, balloon: null, fs: null, pmem: null,
      serial: { file: null, mode: 'Socket', iommu: false, socket: null }, console: { file: null, mode: 'Off', iommu: false, socket: null },
      devices: null, user_devices: null, vdpa: null, vsock: null, pvpanic: false, iommu: false, sgx_epc: null, numa: null,
      watchdog: false, platform: { num_pci_segments: 1, iommu_segments: null, serial_number: null, uuid: null, oem_strings: null },
      tpm: null, preserved_fds: null, landlock_enable: false, landlock_rules: null, rate_limit_groups: null,
    };

    const a = await RealVmm.start({ dir: scratch });
    try {
      const none = await get(a, 'vm.info');
      expect([none.status, errorCode(none.body)]).toEqual([404, 'ENOVM']);
      expect((await put(a, 'vm.boot')).status).toBe(404);
      const refused = await put(a, 'vm.create', JSON.stringify({ ...chConfig, net: [{ tap: 'tap0', mtu: 9000 }] }));
      expect([refused.status, JSON.parse(refused.body).error.message]).toEqual([400, 'net[0].mtu: 9000 is not supported: tsvmm does not set the MTU']);
      expect((await put(a, 'vm.create', JSON.stringify(chConfig))).status).toBe(204);
      const created = JSON.parse((await get(a, 'vm.info')).body);
      expect(created.state).toBe('Created');
      // Sections tsvmm implements come back parsed; the ones it has nothing behind, as given.
      expect(created.config).toMatchObject({ rng: { src: '/dev/urandom' }, console: { mode: 'Off' }, platform: chConfig.platform, watchdog: false });
      // No network device: none reported (as for vsock).
      expect(created.config.net).toBeUndefined();
      expect((await put(a, 'vm.boot')).status).toBe(204);
      const tap = await a.console();
      await tap.moreTicks(2);
      await tap.close();
      expect((await put(a, 'vmm.shutdown')).status).toBe(204);
      await expectVmmGone(a);
    } finally {
      await a.stop();
    }

    const b = await RealVmm.start({ dir: scratch });
    try {
      const none = await b.remote(['info']);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/^tsvmm-remote: .*no VM/i);
      expect(await b.remote(['create', cfgFile])).toEqual({ code: 0, stdout: '', stderr: '' });
      expect(remoteJson(await b.remote(['info']))).toMatchObject({ state: 'Created' });
      expect((await b.remote(['create', cfgFile])).code).toBe(1);
      expect((await b.remote(['boot'])).code).toBe(0);
      const tap = await b.console();
      const ticks = await tap.moreTicks(2);
      expect(ticks[1]!.n).toBe(ticks[0]!.n + 1);
      await tap.close();
      expect((await b.remote(['shutdown-vmm'])).code).toBe(0);
      await expectVmmGone(b);
    } finally {
      await b.stop();
    }
  });

  test('an empty VMM: restore (raw HTTP and tsvmm-remote) continues the snapshotted guest', async () => {
    expect(snapshotDir, 'the raw-HTTP test made the snapshot').toBeDefined();
    for (const via of ['raw', 'remote'] as const) {
      const v = await RealVmm.start({ dir: scratch });
      try {
        if (via === 'raw') {
          const r = await curl(v.socketPath, 'PUT', 'vm.restore', JSON.stringify({ source_url: fileUrl(snapshotDir!) }));
          expect(r.status, r.body).toBe(204);
        } else {
          const r = await v.remote(['restore', `source_url=${fileUrl(snapshotDir!)},prefault=on`]);
          expect(r, r.stderr).toMatchObject({ code: 0 });
        }
        expect(await v.state()).toBe('Paused');
        const tap = await v.console();
        await sleep(100);
        expect(tap.ticks()).toEqual([]); // restored paused: the guest is silent until resumed
        const beforeResume = tap.lines.length;
        expect((await put(v, 'vm.resume')).status).toBe(204);
        const ticks = await tap.moreTicks(2, beforeResume);
        // The guest goes on exactly where it stopped: when the snapshot caught it in the middle of
        // printing a line, the first thing it prints is the rest of that line.
        const resumed = snapshotPendingLine === '' ? snapshotLastTick + 1 : snapshotLastTick + 2;
        if (snapshotPendingLine !== '') expect(snapshotPendingLine + tap.lines[beforeResume]!.text).toBe(`tick ${snapshotLastTick + 1}`);
        expect(ticks.map((t) => t.n).slice(0, 2)).toEqual([resumed, resumed + 1]);
        await tap.close();
        // A second restore into the same (now busy) VMM is refused.
        expect((await put(v, 'vm.restore', JSON.stringify({ source_url: fileUrl(snapshotDir!) }))).status).toBe(400);
      } finally {
        await v.stop();
      }
    }
  });

  test('pause stops the guest ticks and resume restarts them at the next number', async () => {
    const v = await RealVmm.start({ cmdline: TICKS, dir: scratch });
    const tap = await v.console();
    try {
      for (let cycle = 0; cycle < 3; cycle++) {
        await tap.moreTicks(3);
        expect((await put(v, 'vm.pause')).status).toBe(204);
        const paused = performance.now();
        // The VMM flushes the serial port before it answers; allow the console frame in flight.
        await sleep(50);
        const lastBefore = tap.lastTick()!;
        const mark = tap.lines.length;
        await sleep(300);
        expect(tap.ticks(mark), 'no tick while paused').toEqual([]);
        expect(tap.ticks().filter((t) => t.at > paused + 50)).toEqual([]);
        expect((await put(v, 'vm.resume')).status).toBe(204);
        const after = await tap.moreTicks(1, mark);
        expect(after[0]!.n).toBe(lastBefore + 1);
      }
    } finally {
      await tap.close();
      await v.stop();
    }
  });

  test('events arrive in order for boot, pause, resume, snapshot, reboot and shutdown', async () => {
    const v = await RealVmm.start({ dir: scratch });
    const events: VmmEvent[] = [];
    const ws = await v.client.events((e) => events.push(e));
    try {
      await v.client.create({ memory: { size: 64 << 20 }, payload: { kernel: tinyElf, cmdline: TICKS }, serial: { mode: 'Null' } });
      await v.client.boot();
      // Refused requests leave no trace in the stream (no "resuming" for a Running VM).
      await expect(v.client.resume()).rejects.toMatchObject({ status: 400 });
      await v.client.pause();
      await expect(v.client.pause()).rejects.toMatchObject({ status: 400 });
      await v.client.resume();
      await v.client.pause();
      await v.client.snapshot(fileUrl(join(scratch, 'snap-events')));
      await v.client.resume();
      await v.client.reboot();
      await v.client.shutdown();
      const expected = [
        'created', 'booting', 'booted', 'pausing', 'paused', 'resuming', 'resumed',
        'pausing', 'paused', 'snapshotting', 'snapshotted', 'resuming', 'resumed', 'rebooting', 'rebooted', 'shutdown',
      ];
      await expect.poll(() => events.map((e) => e.event)).toEqual(expected);
      expect(new Set(events.map((e) => e.source))).toEqual(new Set(['vm']));
      // Timestamps count from the VMM's start (Cloud Hypervisor's convention), not the host's boot.
      expect(events[0]!.timestamp.secs).toBeLessThan(deadline(120));
      const ns = events.map((e) => BigInt(e.timestamp.secs) * 1_000_000_000n + BigInt(e.timestamp.nanos));
      for (let i = 1; i < ns.length; i++) expect(ns[i]! >= ns[i - 1]!).toBe(true);
      const byName = (name: string) => events.filter((e) => e.event === name).map((e) => e.properties);
      for (const name of ['booted', 'paused', 'resumed']) {
        for (const p of byName(name)) expect(p).toEqual({ duration_ms: expect.any(Number) });
      }
      const [snapshotted] = byName('snapshotted');
      expect(snapshotted).toEqual({
        duration_ms: expect.any(Number), destination: join(scratch, 'snap-events'),
        memory_bytes_written: expect.any(Number), memory_bytes_allocated: expect.any(Number),
      });
      const s = snapshotted as { duration_ms: number; memory_bytes_written: number; memory_bytes_allocated: number };
      expect(s.duration_ms).toBeGreaterThan(0);
      // The guest touched some memory, and a sparse snapshot writes far less than its 64 MiB.
      expect(s.memory_bytes_written).toBeGreaterThan(0);
      expect(s.memory_bytes_written).toBeLessThan(64 << 20);
      expect(s.memory_bytes_allocated).toBeGreaterThan(0);
      expect(byName('snapshotting')).toEqual([null]);

      // tsvmm-remote events prints the same stream, one line per event. It is connected once it
      // has printed something: pause/resume until it has.
      const { spawn } = await import('node:child_process');
      await v.client.boot();
      const child = spawn(process.execPath, [remoteBin, '--api-socket', v.socketPath, 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      const childExit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      await v.waitUntil(async () => {
        await v.client.pause();
        await v.client.resume();
        return /vm resumed/.test(out);
      });
      // Let the last cycle's lines land before taking the mark.
      await sleep(300);
      expect(out).toMatch(/vm resumed \{"duration_ms":[\d.e-]+\}\n$/);
      const mark = out.length;
      await v.client.pause();
      const when = String.raw`\d+\.\d{3}s`;
      await expect.poll(() => out.slice(mark), { timeout: deadline(10_000) })
        .toMatch(new RegExp(String.raw`^${when} vm pausing\n${when} vm paused \{"duration_ms":[\d.e-]+\}\n$`));
      child.kill('SIGINT');
      expect(await childExit).toBe(0);
    } finally {
      ws.close();
      await v.stop();
    }
  });

  test('tsvmm-remote console: receives ticks, sends input, detaches without disturbing the guest', async () => {
    const v = await RealVmm.start({ cmdline: TICKS, dir: scratch });
    try {
      const { spawn } = await import('node:child_process');
      const attach = () => {
        const child = spawn(process.execPath, [remoteBin, '--api-socket', v.socketPath, 'console'], { stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
        const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
        return { child, exit, out: () => out };
      };
      const first = attach();
      await expect.poll(() => (first.out().match(/^tick \d+$/gm) ?? []).length, { timeout: deadline(10_000) }).toBeGreaterThanOrEqual(3);
      // A second client is refused while the first is attached.
      const busy = await v.remote(['console']);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toMatch(/already attached|another client/);
      first.child.stdin.write('hello');
      await sleep(200);
      first.child.stdin.end(); // end of input detaches
      expect(await first.exit).toBe(0);
      const lastSeen = Number([...first.out().matchAll(/^tick (\d+)$/gm)].at(-1)![1]);

      // The guest kept ticking through the detach, and a second attach works.
      const second = attach();
      await expect.poll(() => (second.out().match(/^tick \d+$/gm) ?? []).length, { timeout: deadline(10_000) }).toBeGreaterThanOrEqual(2);
      const resumedAt = Number(/^tick (\d+)$/m.exec(second.out())![1]);
      expect(resumedAt).toBeGreaterThan(lastSeen);
      second.child.stdin.end();
      expect(await second.exit).toBe(0);
      expect(await v.state()).toBe('Running');

      // The input reached the guest's UART: the tiny kernel never reads it, so it is still in the
      // receive FIFO, which the snapshot records.
      await v.client.pause();
      const dir = join(scratch, 'snap-console');
      await v.client.snapshot(fileUrl(dir));
      const doc = JSON.parse(readFileSync(join(dir, 'vm.json'), 'utf8')) as { devices: { serial: { state: { rx: number[] } } } };
      expect(Buffer.from(doc.devices.serial.state.rx).toString()).toBe('hello');
    } finally {
      await v.stop();
    }
  });

  test('--serial socket=PATH: one client is the serial line, both ways; the socket comes back at the same path on restore', async () => {
    const serialPath = join(scratch, 'serial.sock');
    const v = await RealVmm.start({ cmdline: TICKS, dir: scratch, serial: `socket=${serialPath}` });
    let restored: RealVmm | undefined;
    try {
      const info = JSON.parse((await get(v, 'vm.info')).body) as { config: { serial: unknown } };
      expect(info.config.serial).toEqual({ mode: 'Socket', socket: serialPath });
      const first = await serialClient(serialPath);
      await expect.poll(() => (first.text().match(/^tick \d+\r?$/gm) ?? []).length, { timeout: deadline(10_000) }).toBeGreaterThanOrEqual(3);
      // One client at a time: a second is told so and closed.
      const second = await serialClient(serialPath);
      await second.closed;
      expect(second.text()).toMatch(/another client is connected/);
      // tsvmm-remote console works beside it (both see the guest's output).
      const tap = await v.console();
      await tap.moreTicks(2);
      tap.ws.close();
      // Input reaches the UART (the tiny kernel never reads it: the snapshot's receive FIFO shows it).
      first.socket.write('hi');
      await sleep(200);
      await v.client.pause();
      const dir = join(scratch, 'snap-serial-socket');
      await v.client.snapshot(fileUrl(dir));
      const doc = JSON.parse(readFileSync(join(dir, 'vm.json'), 'utf8')) as { devices: { serial: { state: { rx: number[] } } } };
      expect(Buffer.from(doc.devices.serial.state.rx).toString()).toBe('hi');
      // kill -9 leaves the socket file behind; the restored VMM replaces it and listens there again.
      v.proc.kill('SIGKILL');
      await v.waitExit();
      first.socket.destroy();
      expect(existsSync(serialPath)).toBe(true);
      restored = await RealVmm.start({ dir: scratch });
      expect((await restored.remote(['restore', `source_url=${fileUrl(dir)}`])).code).toBe(0);
      const again = await serialClient(serialPath);
      await restored.client.resume();
      await expect.poll(() => (again.text().match(/^tick \d+\r?$/gm) ?? []).length, { timeout: deadline(10_000) }).toBeGreaterThanOrEqual(2);
      again.socket.destroy();
      await restored.stop();
      expect(existsSync(serialPath), 'the VMM removes its serial socket when it ends').toBe(false);
    } finally {
      await restored?.stop();
      await v.stop();
    }
  });

  test('a guest power-off while API requests are in flight ends tsvmm with the guest status', async () => {
    const v = await RealVmm.start({ cmdline: 'tiny.ticks=60 tiny.tick_ms=10 tiny.exit=7', dir: scratch });
    const events: VmmEvent[] = [];
    const ws = await v.client.events((e) => events.push(e));
    const outcomes = new Map<string, number>();
    const note = (what: string) => outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
    // Four clients hammer the API until the process goes away; every request must end (answer or
    // connection error), none may hang.
    const hammer = async (i: number): Promise<void> => {
      const ops = [() => v.client.request('GET', '/api/v1/vmm.ping'), () => v.client.request('GET', '/api/v1/vm.info'),
        () => v.client.request('GET', '/api/v1/vm.counters'), () => v.client.request('PUT', '/api/v1/vm.pause'), () => v.client.request('PUT', '/api/v1/vm.resume')];
      for (let k = 0; !v.exited; k++) {
        // Pausing would stop the guest from reaching its power-off: only one client pauses, and resumes after.
        const op = i === 0 ? ops[3 + (k % 2)]! : ops[k % 3]!;
        try {
          note(`${(await op()).status}`);
        } catch (err) {
          note((err as { code?: string }).code ?? 'error');
          return;
        }
      }
    };
    const clients = [0, 1, 2, 3].map(hammer);
    const end = await v.waitExit(20_000);
    await Promise.all(clients);
    ws.close();
    expect(end, v.proc.stderr).toEqual({ code: 7, signal: null });
    expect(v.proc.stderr).toMatch(/guest powered off with status 7/);
    expect(existsSync(v.socketPath)).toBe(false);
    expect(outcomes.get('200')).toBeGreaterThan(10);
    for (const what of outcomes.keys()) expect(['200', '204', '400', '409', 'ECONNECT']).toContain(what);
    expect(events.filter((e) => e.event === 'power-off').map((e) => e.properties)).toEqual([{ status: 7 }]);
    await v.stop();
  });
});

// Say why, loudly (stderr banner and a named skipped test), when the real VMM cannot run here.

/** A client of a `--serial socket=PATH`: what it received so far, and when the VMM closed it. */
async function serialClient(path: string): Promise<{ socket: Socket; text: () => string; closed: Promise<void> }> {
  const socket = connect(path);
  let text = '';
  socket.setEncoding('latin1').on('data', (d: string) => { text += d; });
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  return { socket, text: () => text, closed };
}
