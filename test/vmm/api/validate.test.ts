import { describe, expect, test } from 'vitest';
import { DEFAULT_MEMORY_SIZE, parseRestoreRequest, parseSnapshotRequest, parseVmConfigJson } from '../../../src/vmm/api/validate.js';

const minimal = { payload: { kernel: '/k.elf' } };

describe('parseVmConfigJson', () => {
  test('fills Cloud Hypervisor-style defaults', () => {
    expect(parseVmConfigJson(minimal)).toEqual({
      cpus: { boot_vcpus: 1, max_vcpus: 1 },
      memory: { size: DEFAULT_MEMORY_SIZE },
      payload: { kernel: '/k.elf' },
      disks: [],
      serial: { mode: 'Null' },
    });
  });

  test('accepts a full body and keeps every field', () => {
    const body = {
      cpus: { boot_vcpus: 2, max_vcpus: 4 },
      memory: { size: 256 * 1024 * 1024 },
      payload: { kernel: '/vmlinux', initramfs: '/initrd', cmdline: 'console=ttyS0' },
      disks: [{ path: '/a.raw' }, { path: '/b.qcow2', readonly: true, id: 'data', serial: 'SER1', format: 'qcow2' }],
      serial: { mode: 'file', file: '/tmp/console.log' },
    };
    expect(parseVmConfigJson(body)).toEqual({
      ...body,
      disks: [{ path: '/a.raw', readonly: false, id: 'disk0' }, body.disks[1]],
      serial: { mode: 'File', file: '/tmp/console.log' },
    });
  });

  test('accepts the older top-level kernel/initramfs/cmdline objects', () => {
    const c = parseVmConfigJson({ kernel: { path: '/k' }, initramfs: { path: '/i' }, cmdline: { args: 'quiet' } });
    expect(c.payload).toEqual({ kernel: '/k', initramfs: '/i', cmdline: 'quiet' });
    expect(() => parseVmConfigJson({ ...minimal, kernel: { path: '/k' } })).toThrow(/either "payload" or the older/);
    expect(() => parseVmConfigJson({ kernel: { file: '/k' } })).toThrow(/unknown field "kernel.file"/);
  });

  test.each([
    [null, /body: expected a JSON object, got null/],
    ['x', /body: expected a JSON object, got string "x"/],
    [{}, /payload: required/],
    [{ payload: {} }, /payload.kernel: required/],
    [{ payload: { kernel: '' } }, /payload.kernel: must not be empty/],
    [{ payload: { kernel: 'a\u0000b' } }, /payload.kernel: must not contain NUL/],
    [{ payload: { kernel: 5 } }, /payload.kernel: expected a string, got number 5/],
    [{ ...minimal, cpu: {} }, /unknown field "cpu"/],
    [{ ...minimal, cpus: { boot_vcpus: 1.5 } }, /cpus.boot_vcpus: expected an integer, got the number 1.5/],
    [{ ...minimal, cpus: { boot_vcpus: 0 } }, /cpus.boot_vcpus: 0 is out of range \(1..254\)/],
    [{ ...minimal, cpus: { boot_vcpus: 4, max_vcpus: 2 } }, /cpus.max_vcpus \(2\) must be at least cpus.boot_vcpus \(4\)/],
    [{ ...minimal, cpus: { boot_vcpus: 1, topology: {} } }, /unknown field "cpus.topology"/],
    [{ ...minimal, memory: {} }, /memory.size: required/],
    [{ ...minimal, memory: { size: '512M' } }, /memory.size: expected an integer, got string "512M"/],
    [{ ...minimal, memory: { size: (1 << 20) + 1 } }, /not a multiple of the 4096-byte page size/],
    [{ ...minimal, memory: { size: 2 ** 60 } }, /memory.size: .* out of range/],
    [{ ...minimal, disks: {} }, /disks: expected an array, got an object/],
    [{ ...minimal, disks: [{}] }, /disks\[0\].path: required/],
    [{ ...minimal, disks: [{ path: '/a', direct: true }] }, /unknown field "disks\[0\].direct"/],
    [{ ...minimal, disks: [{ path: '/a', serial: 'x'.repeat(21) }] }, /disks\[0\].serial: at most 20 bytes/],
    [{ ...minimal, disks: [{ path: '/a', format: 'vmdk' }] }, /disks\[0\].format: expected one of raw, qcow2/],
    [{ ...minimal, disks: [{ path: '/a', id: 'x y' }] }, /disks\[0\].id: "x y" must be/],
    [{ ...minimal, disks: [{ path: '/a', id: 'd' }, { path: '/b', id: 'd' }] }, /id "d" is used by more than one disk/],
    [{ ...minimal, serial: { mode: 'Pty' } }, /serial.mode: expected one of Tty, File, Off, Null, Socket/],
    [{ ...minimal, serial: { mode: 'File' } }, /serial.file: required when serial.mode is File/],
    [{ ...minimal, serial: { mode: 'Tty', file: '/x' } }, /serial.file: only valid when serial.mode is File/],
  ])('rejects %j', (body, message) => {
    expect(() => parseVmConfigJson(body)).toThrow(message);
    try {
      parseVmConfigJson(body);
    } catch (err) {
      expect(err).toMatchObject({ code: 'EINVALIDCONFIG' });
    }
  });
});

describe('snapshot and restore bodies', () => {
  test('accept file URLs', () => {
    expect(parseSnapshotRequest({ destination_url: 'file:///var/snap' })).toEqual({ destination_url: 'file:///var/snap' });
    expect(parseRestoreRequest({ source_url: 'file:///var/snap' })).toEqual({ source_url: 'file:///var/snap' });
    expect(parseRestoreRequest({ source_url: 'file:///s', prefault: true })).toEqual({ source_url: 'file:///s', prefault: true });
  });

  test('vm.restore takes the RestoreConfig body ch-remote sends (every field present)', () => {
    expect(parseRestoreRequest({ source_url: 'file:///s', prefault: false, memory_restore_mode: 'Copy', net_fds: null, resume: false }))
      .toEqual({ source_url: 'file:///s', prefault: false, memory_restore_mode: 'Copy', resume: false });
    expect(parseRestoreRequest({ source_url: 'file:///s', memory_restore_mode: 'OnDemand', net_fds: [], resume: true }))
      .toEqual({ source_url: 'file:///s', memory_restore_mode: 'OnDemand', resume: true });
  });

  test.each([
    [() => parseSnapshotRequest({}), /destination_url: required/],
    [() => parseSnapshotRequest({ destination_url: '/var/snap' }), /is not a URL; use file:\/\/\/absolute\/path\/to\/snapshot-dir/],
    [() => parseSnapshotRequest({ destination_url: 'https://x/y' }), /scheme "https" is not supported/],
    [() => parseSnapshotRequest({ destination_url: 'file://host/x' }), /names host "host"/],
    [() => parseRestoreRequest({ source_url: 'file:///s', prefault: 1 }), /prefault: expected a boolean/],
    [() => parseRestoreRequest({ source_url: 'file:///s', memory_restore_mode: 'x' }), /memory_restore_mode: expected "Copy" or "OnDemand", got string "x"/],
    [() => parseRestoreRequest({ source_url: 'file:///s', resume: 'yes' }), /resume: expected a boolean/],
    [() => parseRestoreRequest({ source_url: 'file:///s', net_fds: [{ id: 'net0', num_fds: 1, fds: [3] }] }), /net_fds: tsvmm has no network devices yet/],
    [() => parseRestoreRequest({ source_url: 'file:///s', net_fds: 3 }), /net_fds: expected null or a list/],
    [() => parseRestoreRequest({ source_url: 'file:///s', landlock: true }), /unknown field "landlock"/],
  ])('rejects bad bodies (%#)', (f, message) => {
    expect(f).toThrow(message);
  });
});
