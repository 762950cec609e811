import { describe, expect, test } from 'vitest';
import { parseRestoreSpec } from '../../src/vmm/restore-spec.js';

describe('restore spec (Cloud Hypervisor syntax plus tsvmm keys)', () => {
  test('source_url and prefault', () => {
    expect(parseRestoreSpec('source_url=file:///s')).toEqual({ source_url: 'file:///s' });
    expect(parseRestoreSpec('source_url=/s,prefault=off')).toEqual({ source_url: 'file:///s', prefault: false });
    expect(parseRestoreSpec('file:///s,prefault=on')).toEqual({ source_url: 'file:///s', prefault: true });
  });

  test('Cloud Hypervisor\'s resume and memory_restore_mode', () => {
    expect(parseRestoreSpec('source_url=file:///s,prefault=on,resume=true,memory_restore_mode=ondemand')).toEqual({
      source_url: 'file:///s', prefault: true, resume: true, memory_restore_mode: 'OnDemand',
    });
    expect(parseRestoreSpec('source_url=file:///s,memory_restore_mode=copy,resume=off')).toEqual({
      source_url: 'file:///s', memory_restore_mode: 'Copy', resume: false,
    });
    expect(() => parseRestoreSpec('source_url=file:///s,memory_restore_mode=lazy')).toThrow(/memory_restore_mode: expected one of Copy, OnDemand, got "lazy"/);
  });

  test('force and per-disk paths for clones', () => {
    expect(parseRestoreSpec('source_url=file:///s,force=on,disk.root=/c/root.qcow2,disk.data=/c/d.raw')).toEqual({
      source_url: 'file:///s', force: true, disk_paths: { root: '/c/root.qcow2', data: '/c/d.raw' },
    });
  });

  test('backing_files=on for the images the disk paths name', () => {
    expect(parseRestoreSpec('source_url=file:///s,disk._disk0=/c/o.qcow2,backing_files=on')).toEqual({
      source_url: 'file:///s', disk_paths: { _disk0: '/c/o.qcow2' }, backing_files: true,
    });
  });

  test('vsock_socket=PATH: the restored vsock device listens there instead', () => {
    expect(parseRestoreSpec('source_url=file:///s,vsock_socket=/run/clone1.vsock')).toEqual({ source_url: 'file:///s', vsock_socket: '/run/clone1.vsock' });
    expect(() => parseRestoreSpec('source_url=file:///s,vsock_socket=')).toThrow(/vsock_socket: a path is required/);
  });

  test('net.ID=TAP: network device ID on another host tap (network_overrides, Firecracker\'s shape)', () => {
    expect(parseRestoreSpec('source_url=file:///s,net._net0=tap9,net.eth1=clone1.1')).toEqual({
      source_url: 'file:///s', network_overrides: [{ iface_id: '_net0', host_dev_name: 'tap9' }, { iface_id: 'eth1', host_dev_name: 'clone1.1' }],
    });
    expect(() => parseRestoreSpec('source_url=file:///s,net._net0=a-name-of-16-chr')).toThrow(/net\._net0: "a-name-of-16-chr" must be a host interface name/);
    expect(() => parseRestoreSpec('source_url=file:///s,net._net0=')).toThrow(/net\._net0: "" must be a host interface name/);
    expect(() => parseRestoreSpec('source_url=file:///s,net.a=t1,net.a=t2')).toThrow(/net\.a: given twice/);
  });

  test('errors name the problem', () => {
    expect(() => parseRestoreSpec('source_url=file:///s,fast=yes')).toThrow(/unknown key "fast"/);
    expect(() => parseRestoreSpec('prefault=on')).toThrow(/source_url=file:\/\/\/dir is required/);
    expect(() => parseRestoreSpec('source_url=http://x/s')).toThrow(/must be file:\/\/\/dir/);
    expect(() => parseRestoreSpec('source_url=file:///s,disk.a=rel/path')).toThrow(/absolute path/);
    expect(() => parseRestoreSpec('source_url=file:///s,prefault=maybe')).toThrow(/on or off/);
  });
});
