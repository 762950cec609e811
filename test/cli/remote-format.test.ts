/** tsvmm-remote's `--human info` rows for the devices whose config varies (formatInfo), without a VMM. */
import { expect, test } from 'vitest';
import { formatInfo, formatLiveSnapshot } from '../../src/cli/remote-format.js';
import type { VmInfo } from '../../src/vmm/controller.js';

test('a row per network device: its host end (tap, inherited fd or a new tap), MAC and host address', () => {
  const info: VmInfo = {
    state: 'Running',
    memory_actual_size: 64 << 20,
    config: {
      cpus: { boot_vcpus: 1, max_vcpus: 1 },
      memory: { size: 64 << 20 },
      payload: { kernel: '/k' },
      disks: [],
      serial: { mode: 'Null' },
      console: { mode: 'Off' },
      vsock: { cid: 3, socket: '/run/v.sock', id: '_vsock0' },
      net: [
        { id: '_net0', tap: 'tap0', mac: '12:34:56:78:9a:bc', ip: '192.168.249.1', mask: '255.255.255.0' },
        { id: 'eth1', fd: 5, mac: '12:34:56:78:9a:bd' },
        { id: '_net2', mac: '12:34:56:78:9a:be' },
      ],
    },
  };
  expect(formatInfo(info).split('\n').slice(-4)).toEqual([
    '_vsock0: vsock cid 3, /run/v.sock',
    '_net0:   net tap tap0, mac 12:34:56:78:9a:bc, host 192.168.249.1 mask 255.255.255.0',
    'eth1:    net fd 5, mac 12:34:56:78:9a:bd',
    '_net2:   net a new tap, mac 12:34:56:78:9a:be',
  ]);
});

test('a live snapshot in one line: the pause first, then the rounds and whether they converged', () => {
  const base = {
    destination: '/snaps/a', memory_bytes_written: 48 << 20, memory_bytes_allocated: 48 << 20, live: true as const,
    pause_ms: 3.25, pause_phases: { stop_ms: 1, copy_ms: 0.5, state_ms: 1.5, disks_ms: 0, resume_ms: 0.25 }, total_ms: 1840, final_pages: 12,
    rounds: [{ pages: 12288, bytes: 48 << 20, ms: 900 }, { pages: 300, bytes: 300 << 12, ms: 20 }],
  };
  expect(formatLiveSnapshot({ ...base, converged: true })).toBe(
    'snapshot /snaps/a: guest paused 3.3 ms for 12 pages and the device state; 2 rounds while it ran (12288 + 300 pages, converged); 48.0 MiB of memory in 1.84 s',
  );
  expect(formatLiveSnapshot({ ...base, converged: false })).toMatch(/did not converge \(the guest dirtied memory faster than it was copied\)/);
});
