/** What a virtio-net device saves in a snapshot, and the checks its restore makes. */
import { DeviceStateError } from '../../errors.js';

/**
 * Frames in flight are not saved (a network may drop them; TCP sends them again): only the
 * identity the guest read from the device.
 */
export interface VirtioNetState {
  /** `xx:xx:xx:xx:xx:xx`, lower case. */
  mac: string;
}

/** A MAC address as configs write it: six hex octets, `xx:xx:xx:xx:xx:xx`, any case. */
export const MAC_PATTERN = '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$';
const MAC = new RegExp(MAC_PATTERN);

/** The 6 bytes of a MAC address written `xx:xx:xx:xx:xx:xx` (any case), or undefined when it is not one. */
export function macBytes(text: string): Uint8Array | undefined {
  if (!MAC.test(text)) return undefined;
  return Uint8Array.from(text.split(':').map((h) => parseInt(h, 16)));
}

/** `s` as a VirtioNetState for a device configured with `configuredMac`, or DeviceStateError. */
export function parseVirtioNetState(s: unknown, configuredMac: string): VirtioNetState {
  const bad = (m: string): never => { throw new DeviceStateError('virtio-net', m); };
  if (typeof s !== 'object' || s === null) bad('state is not an object');
  const mac = (s as Record<string, unknown>).mac;
  if (typeof mac !== 'string' || macBytes(mac) === undefined) bad(`mac ${JSON.stringify(mac)} is not a MAC address`);
  // The guest read its address from the device before the snapshot and keeps using it.
  if ((mac as string).toLowerCase() !== configuredMac.toLowerCase()) bad(`mac ${String(mac)} differs from the configured mac ${configuredMac}`);
  return { mac: (mac as string).toLowerCase() };
}
