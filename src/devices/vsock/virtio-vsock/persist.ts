/** What a virtio-vsock device saves in a snapshot, and the checks its restore makes. */
import { DeviceStateError } from '../../errors.js';

/** Connections are not saved: a restored device resets the transport (device.ts). */
export interface VirtioVsockState {
  guestCid: number;
}

/** The lowest CID a guest may have (0–2 are the hypervisor, local and host addresses). */
export const MIN_GUEST_CID = 3;
/** Linux keeps CIDs in 32 bits and reserves U32_MAX (VMADDR_CID_ANY). */
export const MAX_GUEST_CID = 0xffff_fffe;

export function isGuestCid(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= MIN_GUEST_CID && v <= MAX_GUEST_CID;
}

/** `s` as a VirtioVsockState for a VM configured with `configuredCid`, or DeviceStateError. */
export function parseVirtioVsockState(s: unknown, configuredCid: number): VirtioVsockState {
  const bad = (m: string): never => { throw new DeviceStateError('virtio-vsock', m); };
  if (typeof s !== 'object' || s === null) bad('state is not an object');
  const cid = (s as Record<string, unknown>).guestCid;
  if (!isGuestCid(cid)) bad(`guestCid ${String(cid)} is not a guest CID (${MIN_GUEST_CID}..${MAX_GUEST_CID})`);
  // The guest read its CID from the device before the snapshot and keeps using it.
  if (cid !== configuredCid) bad(`guestCid ${String(cid)} differs from the configured cid ${configuredCid}`);
  return { guestCid: cid as number };
}
