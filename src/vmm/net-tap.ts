/**
 * The host side of a virtio-net device: a TAP interface (sys/tap.ts), opened by name or adopted
 * from an inherited fd, watched by the shared poller so frames reach the device on the main
 * thread without a thread per tap.
 */
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, Tap } from '../sys/tap.js';
import { sharedPoller } from '../sys/poller.js';
import type { NetBackend, NetOffloads } from '../devices/net/virtio-net/device.js';
import type { NetConfig } from './config.js';
import { DEFAULT_NET_MASK } from './net-config.js';
import { macBytes } from '../devices/net/virtio-net/persist.js';

export class TapBackend implements NetBackend {
  private watched = false;

  private constructor(readonly tap: Tap) {}

  /** The tap `config` names (created when absent) or the fd it hands over. */
  static open(config: NetConfig): TapBackend {
    if (config.fd !== undefined) return new TapBackend(Tap.adopt(config.fd));
    const mac = config.host_mac === undefined ? undefined : macBytes(config.host_mac);
    return new TapBackend(Tap.open(config.tap, {
      ...(config.ip === undefined ? {} : { address: { ip: config.ip, mask: config.mask ?? DEFAULT_NET_MASK } }),
      ...(mac === undefined ? {} : { mac }),
    }));
  }

  /** The tap's MAC address, `xx:xx:xx:xx:xx:xx`. */
  hostMac(): string {
    return [...this.tap.mac()].map((b) => b.toString(16).padStart(2, '0')).join(':');
  }

  read(buf: Uint8Array): number {
    return this.tap.read(buf);
  }

  write(frame: Uint8Array): boolean {
    return this.tap.write(frame);
  }

  setOffloads(o: NetOffloads): void {
    // The kernel refuses TSO without checksum offload; the driver's features imply the same order.
    const csum = o.csum ? TUN_F_CSUM : 0;
    this.tap.setOffload(csum === 0 ? 0 : csum | (o.tso4 ? TUN_F_TSO4 : 0) | (o.tso6 ? TUN_F_TSO6 : 0));
  }

  watch(onReadable: (() => void) | undefined): void {
    if (onReadable === undefined) {
      if (this.watched) sharedPoller().remove(this.tap.fd);
      this.watched = false;
      return;
    }
    this.watched = true;
    sharedPoller().add(this.tap.fd, onReadable);
  }

  close(): void {
    this.watch(undefined);
    this.tap.close();
  }
}
