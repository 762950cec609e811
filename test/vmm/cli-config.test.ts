import { describe, expect, test } from 'vitest';
import { parseApiSocket, parseDisk, parseNet, parsePort, parseRng, parseVsock, vmConfigFromCli } from '../../src/vmm/cli-config.js';
import { randomMac } from '../../src/vmm/config.js';

describe('--api-socket as Cloud Hypervisor takes it', () => {
  test('path=, fd= and a bare path', () => {
    expect(parseApiSocket('path=/run/vm.sock')).toEqual({ path: '/run/vm.sock' });
    expect(parseApiSocket('/run/vm.sock')).toEqual({ path: '/run/vm.sock' });
    expect(parseApiSocket('fd=7')).toEqual({ fd: 7 });
  });

  test.each([
    ['path=', /--api-socket path=: a path is required/],
    ['fd=x', /--api-socket fd=: "x" must be the number of an inherited listening socket/],
    ['fd=1', /must be the number of an inherited listening socket \(3 or more\)/],
    ['path=/a,fd=3', /takes one of path=PATH, fd=N or a bare path/],
  ])('refuses %s', (text, message) => {
    expect(() => parseApiSocket(text)).toThrow(message);
  });
});

describe('--serial and --console as Cloud Hypervisor takes them', () => {
  test.each(['--serial', '--console'] as const)('%s: socket=PATH listens at PATH; a bare socket is the API console; modes are case-insensitive', (flag) => {
    expect(parsePort('socket=/run/s.sock', flag)).toEqual({ mode: 'Socket', socket: '/run/s.sock' });
    expect(parsePort('socket', flag)).toEqual({ mode: 'Socket' });
    expect(parsePort('TTY', flag)).toEqual({ mode: 'Tty' });
    expect(parsePort('file=/l', flag)).toEqual({ mode: 'File', file: '/l' });
    expect(parsePort('Off', flag)).toEqual({ mode: 'Off' });
    expect(parsePort('null', flag)).toEqual({ mode: 'Null' });
    expect(parsePort('pty', flag)).toEqual({ mode: 'Pty' });
  });

  test.each([
    ['socket=', /--console socket=: a path is required/],
    ['pipe', /--console: "pipe" must be tty, pty, file=PATH, socket=PATH, socket, null or off/],
  ])('refuses %s', (text, message) => {
    expect(() => parsePort(text, '--console')).toThrow(message);
  });

  const ports = (o: { serial?: string; console?: string }) => {
    const c = vmConfigFromCli({ kernel: '/k', ...o });
    return { serial: c.serial, console: c.console };
  };

  test("Cloud Hypervisor's defaults: the virtio console on the terminal, the serial port nowhere", () => {
    expect(ports({})).toEqual({ serial: { mode: 'Null' }, console: { mode: 'Tty' } });
    expect(ports({ serial: 'tty', console: 'off' })).toEqual({ serial: { mode: 'Tty' }, console: { mode: 'Off' } });
    expect(ports({ console: 'file=/c.log' })).toEqual({ serial: { mode: 'Null' }, console: { mode: 'File', file: '/c.log' } });
  });

  test('--serial tty alone turns the console off (Cloud Hypervisor would refuse two terminals)', () => {
    expect(ports({ serial: 'tty' })).toEqual({ serial: { mode: 'Tty' }, console: { mode: 'Off' } });
  });

  test('refuses both ports on the terminal', () => {
    expect(() => ports({ serial: 'tty', console: 'tty' })).toThrow(/^--serial and --console are both Tty: only one port can use the terminal/);
  });
});

describe('--disk image_type (Cloud Hypervisor) and format (its tsvmm alias)', () => {
  test('either names the format', () => {
    expect(parseDisk('path=/d.qcow2,image_type=qcow2', 0)).toEqual({ path: '/d.qcow2', readonly: false, id: '_disk0', format: 'qcow2' });
    expect(parseDisk('path=/d.raw,format=raw,id=root', 1)).toEqual({ path: '/d.raw', readonly: false, id: 'root', format: 'raw' });
  });

  test('backing_files=on|off (Cloud Hypervisor\'s; off unless given)', () => {
    expect(parseDisk('path=/o.qcow2,backing_files=on', 0)).toEqual({ path: '/o.qcow2', readonly: false, id: '_disk0', backing_files: true });
    expect(parseDisk('path=/o.qcow2,backing_files=off', 0)).toEqual({ path: '/o.qcow2', readonly: false, id: '_disk0' });
    expect(() => parseDisk('path=/o.qcow2,backing_files=maybe', 0)).toThrow(/--disk backing_files: "maybe" must be on or off/);
  });

  test('refuses both at once and types tsvmm cannot read', () => {
    expect(() => parseDisk('path=/d,image_type=raw,format=raw', 0)).toThrow(/give image_type= or format=, not both/);
    expect(() => parseDisk('path=/d,image_type=vhdx', 0)).toThrow(/--disk image_type: "vhdx" must be raw or qcow2 \(tsvmm reads no other image type yet\)/);
  });
});

describe('--vsock as Cloud Hypervisor takes it', () => {
  test('cid= and socket= (id= optional, default _vsock0); iommu=off and pci_segment=0 are accepted', () => {
    expect(parseVsock('cid=3,socket=/run/v.sock')).toEqual({ cid: 3, socket: '/run/v.sock', id: '_vsock0' });
    expect(parseVsock('cid=4294967294,socket=/v,id=agent,iommu=off,pci_segment=0')).toEqual({ cid: 4294967294, socket: '/v', id: 'agent' });
    expect(vmConfigFromCli({ kernel: '/k' }).vsock).toBeUndefined();
    expect(vmConfigFromCli({ kernel: '/k', vsock: 'cid=5,socket=/s' }).vsock).toEqual({ cid: 5, socket: '/s', id: '_vsock0' });
  });

  test('errors name the problem', () => {
    expect(() => parseVsock('cid=3')).toThrow(/cid= and socket= are required/);
    expect(() => parseVsock('socket=/s')).toThrow(/cid= and socket= are required/);
    expect(() => parseVsock('cid=2,socket=/s')).toThrow(/--vsock cid/);
    expect(() => parseVsock('cid=4294967295,socket=/s')).toThrow(/--vsock cid/);
    expect(() => parseVsock('cid=3,socket=/s,iommu=on')).toThrow(/tsvmm has no IOMMU/);
    expect(() => parseVsock('cid=3,socket=/s,pci_segment=1')).toThrow(/one segment/);
    expect(() => parseVsock('cid=3,socket=/s,port=9')).toThrow(/unknown key "port"/);
    expect(() => vmConfigFromCli({ kernel: '/k', disk: ['path=/d,id=v'], vsock: 'cid=3,socket=/s,id=v' })).toThrow(/"v" is a disk's id/);
  });
});

describe('--rng as Cloud Hypervisor takes it', () => {
  test('src=PATH or a bare path; /dev/urandom when not given', () => {
    expect(parseRng('src=/dev/random')).toEqual({ src: '/dev/random' });
    expect(parseRng('/dev/hwrng')).toEqual({ src: '/dev/hwrng' });
    expect(vmConfigFromCli({ kernel: '/k' }).rng).toEqual({ src: '/dev/urandom' });
    expect(() => parseRng('src=')).toThrow(/--rng src=: a path is required/);
    expect(() => parseRng('src=/a,rate=5')).toThrow(/unknown key "rate"/);
  });

  test('a rate limit in the keys Cloud Hypervisor\'s --disk uses', () => {
    expect(parseRng('src=/dev/urandom,bw_size=4096,bw_refill_time=1000')).toEqual({
      src: '/dev/urandom', rate_limiter_config: { bandwidth: { size: 4096, refill_time: 1000 } },
    });
    expect(parseRng('ops_size=10,ops_refill_time=100,ops_one_time_burst=5')).toEqual({
      src: '/dev/urandom', rate_limiter_config: { ops: { size: 10, refill_time: 100, one_time_burst: 5 } },
    });
    expect(() => parseRng('src=/a,bw_size=4096')).toThrow(/bw_size and bw_refill_time go together/);
    expect(() => parseRng('src=/a,ops_size=-1,ops_refill_time=1')).toThrow(/--rng ops_size: "-1" is not a whole number/);
  });
});

describe('--net as Cloud Hypervisor takes it', () => {
  const LOCAL_UNICAST = /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/;

  test('tap=, mac=, host_mac=, ip=, mask=, id=; the id _net<N> and a random MAC when not given, the netmask 255.255.255.0 with ip', () => {
    expect(parseNet('tap=tap0,mac=12:34:56:78:9A:BC,host_mac=52:54:00:00:00:0A,ip=192.168.249.1,mask=255.255.255.128,id=eth0', 0)).toEqual({
      id: 'eth0', tap: 'tap0', mac: '12:34:56:78:9a:bc', host_mac: '52:54:00:00:00:0a', ip: '192.168.249.1', mask: '255.255.255.128',
    });
    const n = parseNet('tap=tap1,ip=10.0.0.1', 2);
    expect(n).toEqual({ id: '_net2', tap: 'tap1', mac: n.mac, ip: '10.0.0.1', mask: '255.255.255.0' });
    expect(n.mac).toMatch(LOCAL_UNICAST);
  });

  test('neither tap nor fd: a new tap (as Cloud Hypervisor); fd=N or fd=[N] (one queue pair)', () => {
    const fresh = parseNet('mac=12:34:56:78:9a:bc', 0);
    expect(fresh).toEqual({ id: '_net0', mac: '12:34:56:78:9a:bc' });
    expect(parseNet('fd=3,mac=12:34:56:78:9a:bc', 0)).toEqual({ id: '_net0', fd: 3, mac: '12:34:56:78:9a:bc' });
    expect(parseNet('fd=[7],mac=12:34:56:78:9a:bc', 0)).toEqual({ id: '_net0', fd: 7, mac: '12:34:56:78:9a:bc' });
  });

  test('Cloud Hypervisor\'s other keys at the one value tsvmm has', () => {
    expect(parseNet('tap=t,mac=12:34:56:78:9a:bc,num_queues=2,queue_size=256,iommu=off,vhost_user=false,vhost_mode=client,pci_segment=0,offload_tso=on,offload_ufo=true,offload_csum=on', 0))
      .toEqual({ id: '_net0', tap: 't', mac: '12:34:56:78:9a:bc' });
  });

  test.each([
    ['tap=tap0,fd=3', /^--net fd: give tap= \(a host interface to open\) or fd= \(an inherited open tap\), not both$/],
    ['fd=[3,4]', /^--net fd: "\[3,4\]": tsvmm's device has one queue pair: give one fd/],
    ['fd=2', /^--net fd: 2 must be the number of an inherited open tap \(3 or more\)$/],
    ['fd=x', /^--net fd: "x" must be the number of an inherited open tap/],
    ['tap=a-name-of-16-chr', /^--net tap: "a-name-of-16-chr" must be a host interface name: 1-15 characters/],
    ['tap=a/b', /^--net tap: "a\/b" must be a host interface name/],
    ['mac=01:00:5e:00:00:01', /^--net mac: "01:00:5e:00:00:01" is a multicast address/],
    ['mac=12:34:56:78:9a', /^--net mac: "12:34:56:78:9a" must be a MAC address/],
    ['mask=255.255.255.0', /^--net mask: only with ip/],
    ['ip=10.0.0.1,mask=255.255.0.255', /^--net mask: "255.255.0.255" is not a netmask/],
    ['ip=10.0.0', /^--net ip: "10.0.0" must be a dotted IPv4 address/],
    ['id=a b', /^--net id: "a b" must be 1-64 characters/],
    ['num_queues=4', /^--net num_queues=4: not supported: tsvmm has one queue pair \(num_queues=2\)$/],
    ['queue_size=1024', /^--net queue_size=1024: not supported/],
    ['iommu=on', /^--net iommu=on: not supported: tsvmm has no IOMMU$/],
    ['vhost_user=on', /^--net vhost_user=on: not supported: tsvmm has no vhost-user backends$/],
    ['pci_segment=1', /^--net pci_segment=1: not supported: tsvmm has one segment, 0$/],
    ['offload_tso=off', /^--net offload_tso=off: not supported: tsvmm always offers the offloads/],
    ['host_mac=01:34:56:78:9a:bd', /^--net host_mac: "01:34:56:78:9a:bd" is a multicast address/],
    ['mtu=9000', /^--net mtu: not supported yet: tsvmm does not set the MTU$/],
    ['vhost_user=off,socket=/v', /^--net socket: not supported yet: tsvmm has no vhost-user backends$/],
    ['tap=t,bw_size=100,bw_refill_time=10', /^--net bw_size: not supported yet: tsvmm has no network rate limits yet$/],
    ['tap=t,frob=1', /^--net: unknown key "frob"/],
  ])('refuses %s', (text, message) => {
    expect(() => parseNet(text, 0)).toThrow(message);
  });

  test('repeatable; ids one name space with the disks and the vsock device', () => {
    const c = vmConfigFromCli({ kernel: '/k', net: ['tap=a', 'tap=b,id=eth1'] });
    expect(c.net!.map((n) => [n.id, n.tap])).toEqual([['_net0', 'a'], ['eth1', 'b']]);
    expect(vmConfigFromCli({ kernel: '/k' }).net).toBeUndefined();
    expect(() => vmConfigFromCli({ kernel: '/k', net: [] })).toThrow(/^--net: a value is required/);
    expect(() => vmConfigFromCli({ kernel: '/k', net: ['tap=a,id=n', 'tap=b,id=n'] })).toThrow(/^--net id: "n" is used by more than one network device$/);
    expect(() => vmConfigFromCli({ kernel: '/k', disk: ['path=/d,id=x'], net: ['tap=a,id=x'] })).toThrow(/^--net id: "x" is a disk's id$/);
    expect(() => vmConfigFromCli({ kernel: '/k', vsock: 'cid=3,socket=/s', net: ['tap=a,id=_vsock0'] })).toThrow(/^--net id: "_vsock0" is the vsock device's id$/);
  });

  test('randomMac: locally administered unicast, different each time', () => {
    const macs = new Set(Array.from({ length: 64 }, () => randomMac()));
    expect(macs.size).toBe(64);
    for (const m of macs) expect(m).toMatch(LOCAL_UNICAST);
  });
});
