import { describe, expect, test } from 'vitest';
import { DEFAULT_MEMORY_SIZE, VmConfig as VmConfigSchema } from '../../../src/vmm/api/schema/bodies.js';
import { parseResizeDiskRequest, parseRestoreRequest, parseSnapshotRequest, parseVmConfigJson } from '../../../src/vmm/api/validate.js';

const minimal = { payload: { kernel: '/k.elf' } };

/**
 * A vm.create body as ch-remote / Cloud Hypervisor's vm.info write it: every section, mostly off.
 * The document's own example, with the serial port on the terminal and recognisable paths.
 */
const example = VmConfigSchema.example;
const CLOUD_HYPERVISOR_CONFIG = {
  ...example,
  payload: { ...example.payload, kernel: '/k/vmlinux', cmdline: 'console=ttyS0' },
  disks: [{ ...example.disks[0]!, path: '/d/root.qcow2' }],
  serial: { ...example.serial, mode: 'Tty' },
  console: { ...example.console, mode: 'Off' },
};

describe('parseVmConfigJson', () => {
  test('takes a whole Cloud Hypervisor config; the sections tsvmm has nothing behind are kept as given', () => {
    const c = parseVmConfigJson(CLOUD_HYPERVISOR_CONFIG);
    expect(c.cpus).toEqual({ boot_vcpus: 2, max_vcpus: 2 });
    expect(c.memory).toEqual({ size: 536870912 });
    expect(c.payload).toEqual({ kernel: '/k/vmlinux', cmdline: 'console=ttyS0' });
    expect(c.disks).toEqual([{ path: '/d/root.qcow2', readonly: false, id: '_disk0', format: 'qcow2' }]);
    expect(c.serial).toEqual({ mode: 'Tty' });
    // vm.info and vm.json report them back; parsing that again gives the same config.
    expect(c.rng).toEqual({ src: '/dev/urandom' });
    expect(c.console).toEqual({ mode: 'Off' });
    expect(c.net).toBeUndefined(); // `net: null`: no network device
    expect(parseVmConfigJson(JSON.parse(JSON.stringify(c)))).toEqual(c);
  });

  test('disks[].backing_files: off unless true (Cloud Hypervisor\'s default)', () => {
    const disk = (backing_files: unknown) => parseVmConfigJson({ ...minimal, disks: [{ path: '/o.qcow2', backing_files }] }).disks[0];
    expect(disk(true)).toEqual({ path: '/o.qcow2', readonly: false, id: '_disk0', backing_files: true });
    for (const off of [false, null, undefined]) expect(disk(off)).toEqual({ path: '/o.qcow2', readonly: false, id: '_disk0' });
    expect(() => disk('on')).toThrow(/disks\[0\]\.backing_files: expected a boolean/);
  });

  test('fills Cloud Hypervisor-style defaults', () => {
    expect(parseVmConfigJson(minimal)).toEqual({
      cpus: { boot_vcpus: 1, max_vcpus: 1 },
      memory: { size: DEFAULT_MEMORY_SIZE },
      payload: { kernel: '/k.elf' },
      disks: [],
      serial: { mode: 'Null' },
      console: { mode: 'Tty' },
      rng: { src: '/dev/urandom' },
    });
    expect(parseVmConfigJson({ ...minimal, rng: { src: '/dev/random', iommu: false } }).rng).toEqual({ src: '/dev/random' });
    const limited = { src: '/dev/random', rate_limiter_config: { bandwidth: { size: 4096, one_time_burst: null, refill_time: 1000 }, ops: null } };
    expect(parseVmConfigJson({ ...minimal, rng: limited }).rng).toEqual({ src: '/dev/random', rate_limiter_config: { bandwidth: { size: 4096, refill_time: 1000 } } });
  });

  test("serial and console: Cloud Hypervisor's defaults, one terminal at most", () => {
    const ports = (o: object) => {
      const c = parseVmConfigJson({ ...minimal, ...o });
      return { serial: c.serial, console: c.console };
    };
    expect(ports({ serial: { mode: 'Tty' } })).toEqual({ serial: { mode: 'Tty' }, console: { mode: 'Off' } });
    expect(ports({ console: { mode: 'Socket', socket: '/run/c.sock', file: null, iommu: false } })).toEqual({ serial: { mode: 'Null' }, console: { mode: 'Socket', socket: '/run/c.sock' } });
    expect(ports({ console: { mode: 'File', file: '/c.log' }, serial: { mode: 'Off' } })).toEqual({ serial: { mode: 'Off' }, console: { mode: 'File', file: '/c.log' } });
    expect(() => ports({ serial: { mode: 'Tty' }, console: { mode: 'Tty' } })).toThrow(/^serial.mode and console.mode are both Tty/);
    expect(() => ports({ console: { mode: 'File' } })).toThrow(/^console.file: required when console.mode is File/);
    expect(() => ports({ console: { mode: 'Tty', iommu: true } })).toThrow(/^console.iommu: true is not supported/);
    // Pty: a `file` (the terminal a running VMM reports in vm.info) is accepted and not kept.
    expect(ports({ serial: { mode: 'Pty', file: '/dev/pts/3' } })).toEqual({ serial: { mode: 'Pty' }, console: { mode: 'Tty' } });
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
      disks: [{ path: '/a.raw', readonly: false, id: '_disk0' }, body.disks[1]],
      serial: { mode: 'File', file: '/tmp/console.log' },
      console: { mode: 'Tty' },
      rng: { src: '/dev/urandom' },
    });
  });

  test('serial: Socket with a socket path (Cloud Hypervisor\'s --serial socket=PATH), or without (the API console)', () => {
    expect(parseVmConfigJson({ ...minimal, serial: { mode: 'Socket', socket: '/run/s.sock', file: null } }).serial).toEqual({ mode: 'Socket', socket: '/run/s.sock' });
    expect(parseVmConfigJson({ ...minimal, serial: { mode: 'Socket', socket: null } }).serial).toEqual({ mode: 'Socket' });
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
    [{ ...minimal, cpus: { boot_vcpus: 1, topology: { threads_per_core: 2, cores_per_die: 1, dies_per_package: 1, packages: 1 } } }, /cpus.topology.threads_per_core: 2 is not supported: tsvmm does not support it yet/],
    [{ ...minimal, memory: {} }, /memory.size: required/],
    [{ ...minimal, memory: { size: '512M' } }, /memory.size: expected an integer, got string "512M"/],
    [{ ...minimal, memory: { size: (1 << 20) + 1 } }, /memory.size: 1048577 is not a multiple of 4096/],
    [{ ...minimal, memory: { size: 2 ** 60 } }, /memory.size: .* out of range/],
    [{ ...minimal, disks: {} }, /disks: expected an array, got an object/],
    [{ ...minimal, disks: [{}] }, /disks\[0\].path: required/],
    [{ ...minimal, disks: [{ path: '/a', direct: true }] }, /disks\[0\].direct: true is not supported/],
    [{ ...minimal, disks: [{ path: '/a', serial: 'x'.repeat(21) }] }, /disks\[0\].serial: at most 20 bytes/],
    [{ ...minimal, disks: [{ path: '/a', format: 'vmdk' }] }, /disks\[0\].format: expected one of raw, qcow2/],
    [{ ...minimal, disks: [{ path: '/a', id: 'x y' }] }, /disks\[0\].id: "x y" must be/],
    [{ ...minimal, disks: [{ path: '/a', id: 'd' }, { path: '/b', id: 'd' }] }, /id "d" is used by more than one disk/],
    [{ ...minimal, serial: { mode: 'Pipe' } }, /serial.mode: expected one of Tty, Pty, File, Off, Null, Socket/],
    [{ ...minimal, serial: { mode: 'File' } }, /serial.file: required when serial.mode is File/],
    [{ ...minimal, serial: { mode: 'Tty', file: '/x' } }, /serial.file: only valid when serial.mode is File/],
    [{ ...minimal, serial: { mode: 'Tty', socket: '/s' } }, /serial.socket: only valid when serial.mode is Socket \(it is Tty\)/],
    [{ ...minimal, serial: { mode: 'Socket', socket: '' } }, /serial.socket: must not be empty/],
    // Cloud Hypervisor sections asking for what tsvmm has no device or feature for: 400 naming them.
    [{ ...minimal, vsock: { cid: 2, socket: '/v.sock' } }, /^vsock.cid: /],
    [{ ...minimal, vsock: { cid: 3 } }, /^vsock.socket: /],
    [{ ...minimal, vsock: { cid: 3, socket: '/v.sock', iommu: true } }, /^vsock.iommu: true is not supported/],
    [{ ...minimal, disks: [{ path: '/a' }], vsock: { cid: 3, socket: '/v.sock', id: '_disk0' } }, /^vsock.id: "_disk0" is a disk's id$/],
    [{ ...minimal, balloon: { size: 0 } }, /^balloon: .* is not supported: tsvmm has no balloon device yet$/],
    [{ ...minimal, payload: { kernel: '/k', firmware: '/fw' } }, /^payload.firmware: "\/fw" is not supported: tsvmm boots kernels directly/],
    [{ ...minimal, memory: { size: 1 << 30, hugepages: true } }, /^memory.hugepages: true is not supported/],
    [{ ...minimal, disks: [{ path: '/a', image_type: 'Vhdx' }] }, /disks\[0\].image_type: expected one of Raw, Qcow2, Unknown, got string "Vhdx"/],
    [{ ...minimal, disks: [{ path: '/a', image_type: 'Raw', format: 'qcow2' }] }, /disks\[0\]: give image_type or format, not both/],
    [{ ...minimal, platform: { num_pci_segments: 2 } }, /^platform.num_pci_segments: 2 is not supported/],
    [{ ...minimal, rng: { src: '/dev/random', iommu: true } }, /^rng.iommu: true is not supported/],
    [{ ...minimal, rng: { src: '' } }, /^rng.src: must not be empty/],
    [{ ...minimal, rng: { rate_limiter_config: { bandwidth: { size: 10 } } } }, /^rng.rate_limiter_config.bandwidth.refill_time: required/],
    [{ ...minimal, rng: { rate_limiter_config: { ops: { size: -1, refill_time: 5 } } } }, /^rng.rate_limiter_config.ops.size: -1 is out of range/],
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
    [() => parseRestoreRequest({ source_url: 'file:///s', memory_restore_mode: 'x' }), /memory_restore_mode: expected one of Copy, OnDemand, got string "x"/],
    [() => parseRestoreRequest({ source_url: 'file:///s', resume: 'yes' }), /resume: expected a boolean/],
    [() => parseRestoreRequest({ source_url: 'file:///s', net_fds: [{ id: 'net0', num_fds: 1, fds: [3] }] }), /^net_fds: .* is not supported: handing fds over the API would need SCM_RIGHTS: give the restored devices their taps with network_overrides$/],
    [() => parseRestoreRequest({ source_url: 'file:///s', network_overrides: [{ iface_id: 'n', host_dev_name: 'tap1' }, { iface_id: 'n', host_dev_name: 'tap2' }] }), /^network_overrides\[1\].iface_id: "n" is given more than once$/],
    [() => parseRestoreRequest({ source_url: 'file:///s', network_overrides: [{ iface_id: 'n', host_dev_name: 'a-name-of-16-chr' }] }), /^network_overrides\[0\].host_dev_name: "a-name-of-16-chr" must be a host interface name/],
    [() => parseRestoreRequest({ source_url: 'file:///s', network_overrides: [{ iface_id: 'n' }] }), /^network_overrides\[0\].host_dev_name: required/],
    [() => parseRestoreRequest({ source_url: 'file:///s', net_fds: 3 }), /^net_fds: 3 is not supported/],
    [() => parseRestoreRequest({ source_url: 'file:///s', landlock: true }), /unknown field "landlock"/],
    [() => parseRestoreRequest({ source_url: 'file:///s', backing_files: 'on' }), /backing_files: expected a boolean/],
  ])('rejects bad bodies (%#)', (f, message) => {
    expect(f).toThrow(message);
  });
});

describe('net: Cloud Hypervisor\'s NetConfig entries', () => {
  const net = (entries: unknown[], o: object = {}) => parseVmConfigJson({ ...minimal, ...o, net: entries }).net;
  const LOCAL_UNICAST = /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/;

  test('defaults: id _netN, a random locally administered unicast MAC, the netmask of ip; no tap and no fd is a new tap', () => {
    const [a, b] = net([{ tap: 'tap0', ip: '192.168.249.1' }, {}])!;
    expect(a).toMatchObject({ id: '_net0', tap: 'tap0', ip: '192.168.249.1', mask: '255.255.255.0' });
    expect(b).toEqual({ id: '_net1', mac: b!.mac });
    expect(a!.mac).toMatch(LOCAL_UNICAST);
    expect(b!.mac).toMatch(LOCAL_UNICAST);
    expect(a!.mac).not.toBe(b!.mac);
    expect(net([])).toBeUndefined();
    expect(parseVmConfigJson(minimal).net).toBeUndefined();
  });

  test('a whole entry as Cloud Hypervisor\'s vm.info writes it; the MAC kept (lower case), so vm.info and vm.json give the same device again', () => {
    const entry = {
      tap: 'tap7', ip: '10.0.0.1', mask: '255.255.0.0', mac: '12:34:56:78:9A:BC', host_mac: null, mtu: null, iommu: false,
      num_queues: 2, queue_size: 256, vhost_user: false, vhost_socket: null, vhost_mode: 'Client', id: 'eth0', fds: [],
      rate_limiter_config: null, pci_segment: 0, offload_tso: true, offload_ufo: true, offload_csum: true,
    };
    const c = parseVmConfigJson({ ...minimal, net: [entry] });
    expect(c.net).toEqual([{ id: 'eth0', tap: 'tap7', mac: '12:34:56:78:9a:bc', ip: '10.0.0.1', mask: '255.255.0.0' }]);
    expect(parseVmConfigJson(JSON.parse(JSON.stringify(c)))).toEqual(c);
    const random = parseVmConfigJson({ ...minimal, net: [{ tap: 'tap0' }] });
    expect(parseVmConfigJson(JSON.parse(JSON.stringify(random)))).toEqual(random);
    // The Cloud Hypervisor fields at null (or offloads null) are as good as at their values.
    expect(net([{ num_queues: null, queue_size: null, vhost_mode: null, offload_tso: null, fds: null, fd: null }])).toHaveLength(1);
  });

  test.each([
    [[{ mac: '13:34:56:78:9a:bc' }], /^net\[0\].mac: "13:34:56:78:9a:bc" is a multicast address/],
    [[{ mac: '00:00:00:00:00:00' }], /^net\[0\].mac: 00:00:00:00:00:00 is not a usable MAC address$/],
    [[{ mac: '12:34:56:78:9a' }], /^net\[0\].mac: "12:34:56:78:9a" must be a MAC address/],
    [[{ tap: 'tap0', mask: '255.255.255.0' }], /^net\[0\].mask: only with ip/],
    [[{ ip: '10.0.0.1', mask: '255.0.255.0' }], /^net\[0\].mask: "255.0.255.0" is not a netmask/],
    [[{ ip: '10.0.0.256' }], /^net\[0\].ip: "10.0.0.256" must be a dotted IPv4 address/],
    [[{ tap: 'a-name-of-16-chr' }], /^net\[0\].tap: "a-name-of-16-chr" must be a host interface name: 1-15 characters/],
    [[{ tap: '..' }], /^net\[0\].tap: "\.\." must be a host interface name/],
    [[{ tap: 'tap0', fds: [3] }], /^net\[0\].fds: \[3\] is not supported: handing a tap fd over the API would need SCM_RIGHTS: give tap, or start tsvmm with --net fd=N$/],
    [[{ fd: 5 }], /^net\[0\].fd: 5 is not supported: handing a tap fd over the API would need SCM_RIGHTS/],
    [[{ offload_tso: false }], /^net\[0\].offload_tso: false is not supported: tsvmm always offers the offloads/],
    [[{ num_queues: 4 }], /^net\[0\].num_queues: 4 is not supported/],
    [[{ queue_size: 1024 }], /^net\[0\].queue_size: 1024 is not supported/],
    [[{ mtu: 9000 }], /^net\[0\].mtu: 9000 is not supported: tsvmm does not set the MTU$/],
    [[{ host_mac: '12:34:56:78:9a' }], /^net\[0\].host_mac: "12:34:56:78:9a" must be a MAC address/],
    [[{ vhost_user: true, vhost_socket: '/v' }], /^net\[0\].vhost_user: true is not supported: tsvmm has no vhost-user backends$/],
    [[{ vhost_mode: 'Server' }], /^net\[0\].vhost_mode: "Server" is not supported/],
    [[{ rate_limiter_config: { bandwidth: { size: 1, refill_time: 1 } } }], /^net\[0\].rate_limiter_config.bandwidth.size: 1 is not supported: tsvmm has no network rate limits yet$/],
    [[{ pci_segment: 1 }], /^net\[0\].pci_segment: 1 is not supported/],
    [[{ id: 'a b' }], /^net\[0\].id: "a b" must be 1-64 characters/],
    [[{ id: 'n' }, { id: 'n' }], /^net\[1\].id: "n" is used by more than one network device$/],
    [[{}, { id: '_net0' }], /^net\[1\].id: "_net0" is used by more than one network device$/],
    [[{ bogus: 1 }], /unknown field "net\[0\].bogus"/],
    [{ tap: 'tap0' }, /^net: expected an array, got an object/],
  ])('refuses %j', (entries, message) => {
    expect(() => parseVmConfigJson({ ...minimal, net: entries })).toThrow(message);
  });

  test('ids are one name space with the disks and the vsock device', () => {
    expect(() => net([{ id: '_disk0' }], { disks: [{ path: '/a' }] })).toThrow(/^net\[0\].id: "_disk0" is a disk's id$/);
    expect(() => net([{ id: 'v' }], { vsock: { cid: 3, socket: '/v.sock', id: 'v' } })).toThrow(/^net\[0\].id: "v" is the vsock device's id$/);
    try {
      net([{ mac: '01:00:5e:00:00:01' }]);
    } catch (e) {
      expect(e).toMatchObject({ code: 'EINVALIDCONFIG', details: { field: 'net[0].mac' } });
    }
  });

  test('a snapshot\'s config: an inherited fd as recorded (beside the tap name it had), and the MAC always there', () => {
    const stored = (entries: unknown[]) => parseVmConfigJson({ ...minimal, net: entries }, { cliDiskIds: true }).net;
    expect(stored([{ id: '_net0', fd: 5, tap: 'tap3', mac: '12:34:56:78:9a:bc' }])).toEqual([{ id: '_net0', fd: 5, tap: 'tap3', mac: '12:34:56:78:9a:bc' }]);
    expect(() => stored([{ tap: 'tap0' }])).toThrow(/^net\[0\].mac: required/);
    expect(() => stored([{ fd: 2, mac: '12:34:56:78:9a:bc' }])).toThrow(/^net\[0\].fd: 2 is out of range/);
  });
});

describe('vm.restore network_overrides (Firecracker\'s shape)', () => {
  test('each device id onto a host tap', () => {
    expect(parseRestoreRequest({ source_url: 'file:///s', net_fds: null, network_overrides: [{ iface_id: '_net0', host_dev_name: 'tap9' }, { iface_id: 'eth1', host_dev_name: 'clone1.1' }] })).toEqual({
      source_url: 'file:///s', network_overrides: [{ iface_id: '_net0', host_dev_name: 'tap9' }, { iface_id: 'eth1', host_dev_name: 'clone1.1' }],
    });
  });
});

describe('vm.resize-disk body', () => {
  test('takes the disk id and the new size in bytes', () => {
    expect(parseResizeDiskRequest({ id: '_disk0', desired_size: 2 ** 31 })).toEqual({ id: '_disk0', desired_size: 2 ** 31 });
  });

  test.each([
    [{}, /id: required/],
    [{ id: 'disk0' }, /desired_size: required/],
    [{ id: 3, desired_size: 512 }, /id: expected a string/],
    [{ id: 'disk0', desired_size: '1G' }, /desired_size: expected an integer/],
    [{ id: 'disk0', desired_size: 0 }, /desired_size: 0 is out of range/],
    [{ id: 'disk0', desired_size: 1.5 }, /desired_size: expected an integer/],
    [{ id: 'disk0', desired_size: 512, shrink: true }, /unknown field "shrink"/],
  ])('rejects bad bodies (%#)', (body, message) => {
    expect(() => parseResizeDiskRequest(body)).toThrow(message);
  });
});
