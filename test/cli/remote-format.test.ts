/** tsvmm-remote's `--human info` rows for the devices whose config varies (formatInfo), without a VMM. */
import { expect, test } from 'vitest';
import { formatInfo } from '../../src/cli/remote-format.js';
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
