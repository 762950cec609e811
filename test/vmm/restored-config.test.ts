/** The overrides a restore applies to the snapshot's config (persist.ts restoredConfig), before any device or KVM call. */
import { describe, expect, test } from 'vitest';
import type { VmConfig } from '../../src/vmm/config.js';
import { restoredConfig } from '../../src/vmm/persist.js';

const MAC = '12:34:56:78:9a:bc';
const saved: VmConfig = {
  cpus: { boot_vcpus: 1, max_vcpus: 1 },
  memory: { size: 64 << 20 },
  payload: { kernel: '/k' },
  disks: [{ path: '/d.raw', readonly: false, id: '_disk0' }],
  serial: { mode: 'Null' },
  console: { mode: 'Off' },
  net: [{ id: '_net0', tap: 'tap0', mac: MAC, ip: '10.0.0.1', mask: '255.255.255.0' }, { id: 'eth1', mac: '12:34:56:78:9a:bd' }],
};
const src = { source_url: 'file:///s' };

describe('network_overrides', () => {
  test('none: the recorded devices as they were', () => {
    expect(restoredConfig(saved, src)).toEqual(saved);
  });

  test('each named device on its new tap; the rest of its config (MAC, address) kept', () => {
    const c = restoredConfig(saved, { ...src, network_overrides: [{ iface_id: 'eth1', host_dev_name: 'clone1' }] });
    expect(c.net).toEqual([saved.net![0], { id: 'eth1', tap: 'clone1', mac: '12:34:56:78:9a:bd' }]);
  });

  test('an unknown id is refused, listing the snapshot\'s network devices', () => {
    expect(() => restoredConfig(saved, { ...src, network_overrides: [{ iface_id: 'eth9', host_dev_name: 't' }] }))
      .toThrow(/^restore: network_overrides: the snapshot has no network device "eth9" \(its network devices: _net0, eth1\)$/);
    const { net: _none, ...withoutNet } = saved;
    expect(() => restoredConfig(withoutNet, { ...src, network_overrides: [{ iface_id: '_net0', host_dev_name: 't' }] }))
      .toThrow(/\(its network devices: none\)$/);
  });

  test('a device recorded with an inherited fd needs an override, which drops the fd', () => {
    const withFd: VmConfig = { ...saved, net: [{ id: '_net0', fd: 5, tap: 'tap5', mac: MAC }] };
    expect(() => restoredConfig(withFd, src)).toThrow(/^restore: network device _net0 used an inherited tap fd, which does not outlive its process: give network_overrides \/ net\._net0=TAP$/);
    expect(restoredConfig(withFd, { ...src, network_overrides: [{ iface_id: '_net0', host_dev_name: 'tap6' }] }).net).toEqual([{ id: '_net0', tap: 'tap6', mac: MAC }]);
  });

  test('disk_paths and vsock_socket as before', () => {
    expect(restoredConfig(saved, { ...src, disk_paths: { _disk0: '/c.qcow2' }, backing_files: true }).disks).toEqual([{ path: '/c.qcow2', readonly: false, id: '_disk0', backing_files: true }]);
    expect(() => restoredConfig(saved, { ...src, disk_paths: { x: '/c' } })).toThrow(/the snapshot has no disk "x"/);
    expect(() => restoredConfig(saved, { ...src, vsock_socket: '/v' })).toThrow(/the snapshot's VM has no vsock device/);
  });
});
