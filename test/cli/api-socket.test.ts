/**
 * `tsvmm --api-socket` in Cloud Hypervisor's forms, on an empty VMM (no guest, so no KVM needed):
 * `path=PATH`, and `fd=N` — a socket the parent bound and listens on, inherited by tsvmm, as
 * orchestrators that pre-create sockets hand it over. Also `--event-monitor`, `--console off`
 * and `-V`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { apiRequest, waitForApi } from '../support/snapshot-vm.js';
import { TsvmmProcess, tsvmmBin } from '../support/tsvmm-process.js';
import { VERSION } from '../../src/vmm/vmm.js';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-api-socket-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tsvmm --api-socket', () => {
  it('path=PATH serves the API there, and vmm.shutdown ends the process and removes the file; --event-monitor path= logs the events', async () => {
    const sock = join(dir, 'by-path.sock');
    const events = join(dir, 'events.json');
    const p = new TsvmmProcess(['--api-socket', `path=${sock}`, '--event-monitor', `path=${events}`, '--console', 'off']);
    try {
      await waitForApi(sock, p);
      expect((await apiRequest(sock, 'GET', 'vmm.ping')).status).toBe(200);
      expect((await apiRequest(sock, 'PUT', 'vm.create', { payload: { kernel: '/k' } })).status).toBe(204);
      expect((await apiRequest(sock, 'PUT', 'vmm.shutdown')).status).toBe(204);
      expect((await p.exited).code).toBe(0);
      expect(existsSync(sock)).toBe(false);
    } finally {
      p.kill('SIGKILL');
    }
    // One JSON object per line, Cloud Hypervisor's event shape.
    const lines = readFileSync(events, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { source: string; event: string; timestamp: { secs: number; nanos: number } });
    expect(lines.map((e) => `${e.source} ${e.event}`)).toEqual(['vm created', 'vmm shutdown']);
    expect(lines[0]!.timestamp).toEqual({ secs: expect.any(Number), nanos: expect.any(Number) });
  });

  it('fd=N serves the API on a listening socket it inherited', async () => {
    const sock = join(dir, 'by-fd.sock');
    // python3 binds and listens, then runs tsvmm with the socket as an inherited fd.
    const parent = spawn('python3', ['-c', `
import os, socket, subprocess, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(8)
fd = s.fileno(); os.set_inheritable(fd, True)
sys.exit(subprocess.run([sys.argv[2], sys.argv[3], '--api-socket', 'fd=%d' % fd], pass_fds=[fd]).returncode)
`, sock, process.execPath, tsvmmBin], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    parent.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((r) => parent.on('exit', (code) => r(code)));
    try {
      await waitForApi(sock);
      const ping = await apiRequest(sock, 'GET', 'vmm.ping');
      expect(ping.status, stderr).toBe(200);
      expect((await apiRequest(sock, 'PUT', 'vmm.shutdown')).status).toBe(204);
      expect(await exited, stderr).toBe(0);
    } finally {
      parent.kill('SIGKILL');
    }
  });
});

it('-v logs what the VMM does (its events) at info level, to --log-file', async () => {
  const sock = join(dir, 'verbose.sock');
  const logFile = join(dir, 'tsvmm.log');
  const p = new TsvmmProcess(['-v', '--log-file', logFile, '--api-socket', sock]);
  try {
    await waitForApi(sock, p);
    expect((await apiRequest(sock, 'PUT', 'vm.create', { payload: { kernel: '/k' } })).status).toBe(204);
    expect((await apiRequest(sock, 'PUT', 'vmm.shutdown')).status).toBe(204);
    expect((await p.exited).code).toBe(0);
  } finally {
    p.kill('SIGKILL');
  }
  expect(readFileSync(logFile, 'utf8')).toBe('tsvmm: info: vm created\ntsvmm: info: vmm shutdown\n');
  expect(p.stderr).toBe('');
});

it('-V and --version print the version', () => {
  for (const flag of ['-V', '--version']) {
    const r = spawnSync(process.execPath, [tsvmmBin, flag], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`tsvmm v${VERSION}\n`);
  }
});
