/**
 * TAP interfaces as virtio-net's host side opens them (src/sys/tap.ts), against the host kernel:
 * needs /dev/net/tun and CAP_NET_ADMIN (root), as tsvmm with --net does. Taps made here are not
 * persistent: each goes when its fd is closed.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Tap, TapError, VNET_HDR_BYTES } from '../../src/sys/tap.js';
import { O_RDWR, close, ioctlBuf, open } from '../../src/sys/libc.js';
import { until } from '../support/timing.js';

const TUNSETIFF = 0x400454ca;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const GUEST_MAC = [0x52, 0x54, 0x00, 0x00, 0x00, 0x02];

/** An ARP request from 10.79.0.2 (GUEST_MAC) for 10.79.0.1, behind a zeroed virtio-net header. */
function arpRequest(): Uint8Array {
  const f = new Uint8Array(VNET_HDR_BYTES + 42);
  const e = f.subarray(VNET_HDR_BYTES);
  e.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ...GUEST_MAC, 0x08, 0x06], 0);
  e.set([0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, ...GUEST_MAC, 10, 79, 0, 2, 0, 0, 0, 0, 0, 0, 10, 79, 0, 1], 14);
  return f;
}

/** An fd of tap `name` opened with `flags` the way another program would hand it over. */
function openTapFd(name: string, flags: number): number {
  const fd = open('/dev/net/tun', O_RDWR);
  const req = new Uint8Array(40);
  req.set(Buffer.from(name));
  new DataView(req.buffer).setUint16(16, flags, true);
  ioctlBuf(fd, TUNSETIFF, req);
  return fd;
}

describe('TAP (sys/tap.ts)', () => {
  const opened: Tap[] = [];
  const fds: number[] = [];
  afterEach(() => {
    for (const t of opened.splice(0)) t.close();
    for (const fd of fds.splice(0)) close(fd);
  });

  it('creates a tap with the MAC and address asked for, up; frames go both ways behind the virtio-net header', async () => {
    const tap = Tap.open('tsvtest%d', { address: { ip: '10.79.0.1', mask: '255.255.255.0' }, mac: Uint8Array.from([0x52, 0x54, 0, 0, 0, 0x01]) });
    opened.push(tap);
    expect(tap.name).toMatch(/^tsvtest\d+$/);
    expect(readFileSync(`/sys/class/net/${tap.name}/address`, 'utf8').trim()).toBe('52:54:00:00:00:01');
    expect([...tap.mac()]).toEqual([0x52, 0x54, 0, 0, 0, 0x01]);
    expect(execFileSync('ip', ['-o', '-4', 'addr', 'show', 'dev', tap.name], { encoding: 'utf8' })).toContain('10.79.0.1/24');
    expect(Number(readFileSync(`/sys/class/net/${tap.name}/flags`, 'utf8')) & 1).toBe(1);

    expect(tap.write(arpRequest())).toBe(true);
    const buf = new Uint8Array(65562);
    // The host answers the "guest": an ARP reply to GUEST_MAC (other frames, e.g. IPv6 router solicitations, may come first).
    let reply: Uint8Array | undefined;
    await until(() => {
      for (let n = tap.read(buf); n > 0; n = tap.read(buf)) {
        const e = buf.subarray(VNET_HDR_BYTES, n);
        if (e[12] === 0x08 && e[13] === 0x06 && e[21] === 2) reply = Uint8Array.from(e);
      }
      return reply !== undefined;
    }, 10_000, 'an ARP reply from the host', 20);
    expect([...reply!.subarray(0, 6)]).toEqual(GUEST_MAC);
    expect([...reply!.subarray(28, 32)]).toEqual([10, 79, 0, 1]);
    expect(tap.read(buf)).toBe(0); // non-blocking: nothing waits
  });

  it('takes over a tap fd opened elsewhere with IFF_VNET_HDR, and refuses one without', () => {
    const good = openTapFd('tsvadopt0', IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
    const tap = Tap.adopt(good);
    opened.push(tap);
    expect(tap.name).toBe('tsvadopt0');
    tap.setOffload(0);
    const bad = openTapFd('tsvadopt1', IFF_TAP | IFF_NO_PI);
    fds.push(bad);
    expect(() => Tap.adopt(bad)).toThrow(/tap fd \d+ \(tsvadopt1\): opened without IFF_VNET_HDR/);
    const notTap = open('/dev/null', O_RDWR);
    fds.push(notTap);
    expect(() => Tap.adopt(notTap)).toThrow(TapError);
  });

  it('refuses a tap another process holds, naming it', () => {
    const fd = openTapFd('tsvbusy0', IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
    fds.push(fd);
    expect(() => Tap.open('tsvbusy0')).toThrow(/tap "tsvbusy0": TUNSETIFF failed .*EBUSY.*another process has this tap open/);
    expect(() => Tap.open('a-name-too-long-for-linux')).toThrow(/at most 15 bytes/);
  });
});
