/**
 * A Linux TAP interface opened for a virtio-net device: /dev/net/tun with IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR, so each read or write is one Ethernet frame behind the 12-byte virtio-net header
 * (struct virtio_net_hdr_v1, the layout a VERSION_1 driver uses), and the kernel does the
 * checksum and segmentation work the header asks for. Non-blocking: a read with no frame waiting
 * returns 0 instead of blocking the main thread.
 */
import { koffi, libc } from './libc-handle.js';
import { EAGAIN, SysError, errnoName } from './errno.js';
import { TsvmmError } from '../errors.js';
import { O_NONBLOCK, O_RDWR, F_GETFL, F_SETFL, close, fcntl, ioctlBuf, ioctlInt, open } from './libc.js';

/** ioctls of include/uapi/linux/if_tun.h and sockios.h. */
const TUNSETIFF = 0x400454ca;
const TUNGETIFF = 0x800454d2;
const TUNSETOFFLOAD = 0x400454d0;
const TUNSETVNETHDRSZ = 0x400454d8;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const SIOCSIFADDR = 0x8916;
const SIOCSIFNETMASK = 0x891c;
const SIOCSIFHWADDR = 0x8924;
const SIOCGIFHWADDR = 0x8927;
const ARPHRD_ETHER = 1;

const IFF_UP = 0x1;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const AF_INET = 2;
const SOCK_DGRAM = 2;
/** struct ifreq: a 16-byte name, then a 24-byte union (flags, or a struct sockaddr). */
const IFREQ_BYTES = 40;
const IFNAMSIZ = 16;

/** TUNSETOFFLOAD flags: what the kernel may hand us unfinished (the guest finishes it). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_UFO = 0x10;

/** Bytes of the virtio-net header on every frame (virtio_net_hdr_v1: VERSION_1's layout). */
export const VNET_HDR_BYTES = 12;

const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  read: libc.func('intptr_t read(int fd, void *buf, size_t len)'),
  write: libc.func('intptr_t write(int fd, const void *buf, size_t len)'),
};

/** A TAP that cannot be opened or set up; the message names the tap and what to do. */
export class TapError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ETAP', message, details);
  }
}

export interface TapSetup {
  /** IPv4 address and netmask, dotted. */
  address?: { ip: string; mask: string };
  /** The interface's own MAC address (6 bytes); absent: the kernel's choice stays. */
  mac?: Uint8Array;
}

export class Tap {
  private closed = false;

  private constructor(readonly fd: number, readonly name: string) {}

  /**
   * Opens the tap `name` (created when it does not exist; `vmtap%d` lets the kernel pick the
   * number), gives it the MAC and address asked for, and brings it up.
   */
  static open(name: string | undefined, setup: TapSetup = {}): Tap {
    const wanted = name ?? 'vmtap%d';
    if (Buffer.byteLength(wanted) >= IFNAMSIZ) throw new TapError(`tap "${wanted}": a name has at most ${IFNAMSIZ - 1} bytes`);
    let fd: number;
    try {
      fd = open('/dev/net/tun', O_RDWR | O_NONBLOCK);
    } catch (e) {
      throw new TapError(`tap "${wanted}": cannot open /dev/net/tun (${reason(e)}): the host needs the tun module and CAP_NET_ADMIN`);
    }
    try {
      const req = ifreq(wanted);
      new DataView(req.buffer).setUint16(IFNAMSIZ, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, true);
      try {
        ioctlBuf(fd, TUNSETIFF, req);
      } catch (e) {
        throw new TapError(`tap "${wanted}": TUNSETIFF failed (${reason(e)}): ${hintFor(e)}`);
      }
      const tap = new Tap(fd, nameOf(req));
      tap.setHeaderSize();
      configure(tap.name, setup);
      return tap;
    } catch (e) {
      close(fd);
      throw e;
    }
  }

  /**
   * Takes over an open tap fd another process set up (Cloud Hypervisor's `fd=`): it must be a TAP
   * without packet information and with virtio-net headers, as tsvmm would have opened it.
   */
  static adopt(fd: number): Tap {
    const req = new Uint8Array(IFREQ_BYTES);
    try {
      ioctlBuf(fd, TUNGETIFF, req);
    } catch (e) {
      throw new TapError(`tap fd ${fd}: not an open TAP (${reason(e)})`);
    }
    const flags = new DataView(req.buffer).getUint16(IFNAMSIZ, true);
    const name = nameOf(req);
    const needed = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if ((flags & needed) !== needed) {
      throw new TapError(`tap fd ${fd} (${name}): opened without ${[[IFF_TAP, 'IFF_TAP'], [IFF_NO_PI, 'IFF_NO_PI'], [IFF_VNET_HDR, 'IFF_VNET_HDR']].filter(([f]) => (flags & (f as number)) === 0).map(([, n]) => n).join(' | ')}: open it with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    const tap = new Tap(fd, name);
    tap.setHeaderSize();
    return tap;
  }

  /** The interface's MAC address (6 bytes). */
  mac(): Uint8Array {
    const req = ifreq(this.name);
    withInetSocket(this.name, (sock) => ioctlBuf(sock, SIOCGIFHWADDR, req, `SIOCGIFHWADDR ${this.name}`));
    return req.slice(IFNAMSIZ + 2, IFNAMSIZ + 8);
  }

  /** Which unfinished work (TUN_F_*) the kernel may leave to the guest in frames we read. */
  setOffload(flags: number): void {
    try {
      ioctlInt(this.fd, TUNSETOFFLOAD, flags);
    } catch (e) {
      throw new TapError(`tap ${this.name}: TUNSETOFFLOAD(0x${flags.toString(16)}) failed (${reason(e)})`);
    }
  }

  /** One frame (header included) into `buf`: its length, or 0 when none is waiting. */
  read(buf: Uint8Array): number {
    const n = Number(c.read(this.fd, buf, buf.byteLength));
    if (n >= 0) return n;
    const err = koffi.errno();
    if (err === EAGAIN) return 0;
    throw new TapError(`tap ${this.name}: read failed (${errnoName(err)})`);
  }

  /** Sends one frame (header included); false when the tap refused it (the frame is dropped, as a NIC would). */
  write(frame: Uint8Array): boolean {
    return Number(c.write(this.fd, frame, frame.byteLength)) === frame.byteLength;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }

  private setHeaderSize(): void {
    const size = new Uint8Array(4);
    new DataView(size.buffer).setInt32(0, VNET_HDR_BYTES, true);
    try {
      ioctlBuf(this.fd, TUNSETVNETHDRSZ, size);
    } catch (e) {
      throw new TapError(`tap ${this.name}: TUNSETVNETHDRSZ failed (${reason(e)})`);
    }
  }
}

/** Sets the MAC and the IPv4 address and netmask asked for, then brings the interface up. */
function configure(name: string, { address, mac }: TapSetup): void {
  withInetSocket(name, (sock) => {
    if (mac !== undefined) {
      const req = ifreq(name);
      new DataView(req.buffer).setUint16(IFNAMSIZ, ARPHRD_ETHER, true);
      req.set(mac, IFNAMSIZ + 2);
      ioctlBuf(sock, SIOCSIFHWADDR, req, `SIOCSIFHWADDR ${name}`);
    }
    if (address !== undefined) {
      ioctlBuf(sock, SIOCSIFADDR, ifreqAddress(name, address.ip), `SIOCSIFADDR ${name} ${address.ip}`);
      ioctlBuf(sock, SIOCSIFNETMASK, ifreqAddress(name, address.mask), `SIOCSIFNETMASK ${name} ${address.mask}`);
    }
    const req = ifreq(name);
    ioctlBuf(sock, SIOCGIFFLAGS, req, `SIOCGIFFLAGS ${name}`);
    const view = new DataView(req.buffer);
    view.setUint16(IFNAMSIZ, view.getUint16(IFNAMSIZ, true) | IFF_UP, true);
    ioctlBuf(sock, SIOCSIFFLAGS, req, `SIOCSIFFLAGS ${name}`);
  });
}

/** Runs interface ioctls on a throwaway AF_INET socket; their failures become TapErrors naming the tap. */
function withInetSocket<T>(name: string, work: (sock: number) => T): T {
  const sock = Number(c.socket(AF_INET, SOCK_DGRAM, 0));
  if (sock < 0) throw new TapError(`tap ${name}: socket(AF_INET) failed (${errnoName(koffi.errno())})`);
  try {
    return work(sock);
  } catch (e) {
    throw e instanceof TapError ? e : new TapError(`tap ${name}: cannot set it up (${reason(e)})`);
  } finally {
    close(sock);
  }
}

function ifreq(name: string): Uint8Array {
  const req = new Uint8Array(IFREQ_BYTES);
  req.set(Buffer.from(name));
  return req;
}

/** An ifreq holding `name` and a struct sockaddr_in with `ip` (network byte order). */
function ifreqAddress(name: string, ip: string): Uint8Array {
  const req = ifreq(name);
  const view = new DataView(req.buffer);
  view.setUint16(IFNAMSIZ, AF_INET, true);
  ip.split('.').forEach((octet, i) => view.setUint8(IFNAMSIZ + 4 + i, Number(octet)));
  return req;
}

function nameOf(req: Uint8Array): string {
  const end = req.subarray(0, IFNAMSIZ).indexOf(0);
  return Buffer.from(req.subarray(0, end < 0 ? IFNAMSIZ : end)).toString();
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function hintFor(e: unknown): string {
  const errno = e instanceof SysError ? e.errnoName : '';
  if (errno === 'EBUSY') return 'another process has this tap open';
  if (errno === 'EPERM') return 'creating or attaching a tap needs CAP_NET_ADMIN (or a persistent tap owned by this user)';
  if (errno === 'EINVAL') return 'an interface of that name exists and is not a TAP';
  return 'check that the tun module is loaded';
}
