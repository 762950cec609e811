/**
 * Snapshot and restore of a whole VM: gathers component state from a paused Vm into the
 * snapshot format (src/snapshot/), and rebuilds a paused Vm from a verified snapshot directory.
 */
import { ConfigError } from '../errors.js';
import { dataExtentsOf, fromJsonSafe, readSnapshot, snapshotUrlToPath, toJsonSafe, writeSnapshot } from '../snapshot/index.js';
import type { DeviceEntry, DiskEntry, MemorySource, SnapshotContent } from '../snapshot/index.js';
import type { MappedRegion } from '../memory/regions.js';
import type { JsonObject } from '../snapshot/json-codec.js';
import type { VmConfig } from './config.js';
import type { RestoreRequest, SnapshotSummary } from './requests.js';
import { checkDiskIdentity, diskIdentity, type DiskIdentity } from './disk-identity.js';
import type { PlatformState } from './platform.js';
import type { VirtioMmioState } from '../devices/virtio/mmio.js';
import { vcpuStateFromJson } from './vcpu-state.js';
import { VmBuilder } from './builder.js';
import type { Vm, VmHooks } from './vm.js';
import { vmLevelStateFromJson } from './vm-state.js';
import { SNAPSHOT_CONFIG } from './snapshot-config.js';

/** Device types this VMM can rebuild from a snapshot. */
export const DEVICE_TYPES = ['serial', 'i8042', 'virtio-blk', 'virtio-console', 'virtio-rng', 'virtio-vsock', 'virtio-net', 'vmgenid'] as const;

function deviceEntries(p: PlatformState): Record<string, DeviceEntry> {
  const out: Record<string, DeviceEntry> = {};
  // Device states are JSON-safe by contract (Snapshottable); the round trip drops anything else.
  const json = (v: unknown) => JSON.parse(JSON.stringify(v)) as DeviceEntry['state'];
  if (p.serial !== undefined) out['serial'] = { type: 'serial', state: json(p.serial) };
  out['i8042'] = { type: 'i8042', state: json(p.i8042) };
  for (const [id, s] of Object.entries(p.disks)) out[`disk:${id}`] = { type: 'virtio-blk', state: json(s) };
  if (p.console !== undefined) out['console'] = { type: 'virtio-console', state: json(p.console) };
  if (p.rng !== undefined) out['rng'] = { type: 'virtio-rng', state: json(p.rng) };
  if (p.vsock !== undefined) out['vsock'] = { type: 'virtio-vsock', state: json(p.vsock) };
  for (const [id, s] of Object.entries(p.net ?? {})) out[`net:${id}`] = { type: 'virtio-net', state: json(s) };
  if (p.vmgenid !== undefined) out['vmgenid'] = { type: 'vmgenid', state: json(p.vmgenid) };
  return out;
}

function platformFromEntries(devices: Record<string, DeviceEntry>): PlatformState {
  const p: PlatformState = { i8042: undefined as unknown as PlatformState['i8042'], disks: {} };
  for (const [name, e] of Object.entries(devices)) {
    if (e.type === 'serial') p.serial = e.state as unknown as NonNullable<PlatformState['serial']>;
    else if (e.type === 'i8042') p.i8042 = e.state as unknown as PlatformState['i8042'];
    else if (e.type === 'virtio-blk') p.disks[name.replace(/^disk:/, '')] = e.state as unknown as PlatformState['disks'][string];
    else if (e.type === 'virtio-console') p.console = e.state as unknown as NonNullable<PlatformState['console']>;
    else if (e.type === 'virtio-rng') p.rng = e.state as unknown as NonNullable<PlatformState['rng']>;
    else if (e.type === 'virtio-vsock') p.vsock = e.state as unknown as NonNullable<PlatformState['vsock']>;
    else if (e.type === 'virtio-net') (p.net ??= {})[name.replace(/^net:/, '')] = e.state as unknown as VirtioMmioState;
    else if (e.type === 'vmgenid') p.vmgenid = e.state as unknown as NonNullable<PlatformState['vmgenid']>;
  }
  if (p.i8042 === undefined) throw new ConfigError('the snapshot has no i8042 device state');
  return p;
}

/**
 * What a snapshot records besides memory, from a paused VM: vCPU, VM and device state, and each
 * disk's image and identity once everything the guest wrote is in it.
 */
export async function snapshotContent(vm: Vm, config: VmConfig): Promise<SnapshotContent<VmConfig>> {
  const saved = await vm.saveState();
  // Everything the guest wrote must be in the image before its identity is recorded.
  await Promise.all(vm.platform.disks.map((d) => d.backend.flush()));
  const disks: DiskEntry[] = [];
  for (const d of vm.platform.disks) {
    disks.push({ id: d.config.id, path: d.path, identity: await diskIdentity(d.path) });
  }
  return {
    config,
    configCodec: SNAPSHOT_CONFIG,
    vcpus: saved.vcpus.map((v) => toJsonSafe(v) as JsonObject),
    vm: toJsonSafe(saved.vm) as JsonObject,
    devices: deviceEntries(saved.platform),
    disks,
  };
}

/**
 * Where a region's memfd holds data (the pages the guest touched), mapped into this process in
 * one go; undefined for a region mapped from a snapshot file (its whole view is scanned).
 */
export function touchedExtents(r: MappedRegion): Array<[number, number]> | undefined {
  if (r.memfd === null) return undefined;
  const extents = dataExtentsOf(r.memfd, r.size);
  // Pages the guest wrote are not yet mapped in this process: fault them in all at once.
  for (const [offset, length] of extents) r.populate(offset, length);
  return extents;
}

/**
 * Writes a snapshot of a paused VM to `url` (file:///dir); the VM stays paused. `config` is what
 * vm.json records (default: the VM's config as it stands now).
 */
export async function snapshotVm(vm: Vm, url: string, config: VmConfig = vm.config): Promise<SnapshotSummary> {
  const dir = snapshotUrlToPath(url);
  const content = await snapshotContent(vm, config);
  const result = await writeSnapshot(dir, {
    ...content,
    memory: vm.regions.map((r) => {
      const source: MemorySource = { guestBase: r.guestBase, size: r.size, bytes: r.bytes };
      const extents = touchedExtents(r);
      if (extents !== undefined) source.dataExtents = extents;
      return source;
    }),
  });
  return summaryOf(result);
}

/** The API's account of a written snapshot. */
export function summaryOf(result: { dir: string; regions: ReadonlyArray<{ dataBytes: number; allocatedBytes: number }> }): SnapshotSummary {
  return {
    destination: result.dir,
    memory_bytes_written: result.regions.reduce((n, r) => n + r.dataBytes, 0),
    memory_bytes_allocated: result.regions.reduce((n, r) => n + r.allocatedBytes, 0),
  };
}

/**
 * The config a restore runs on: the snapshot's, with the request's overrides (disk_paths,
 * backing_files, vsock_socket, network_overrides) applied. A network device the snapshot recorded
 * with an inherited tap fd needs an override: that fd died with the process that had it.
 */
export function restoredConfig(saved: VmConfig, req: RestoreRequest): VmConfig {
  const newPaths = new Map(Object.entries(req.disk_paths ?? {}));
  for (const id of newPaths.keys()) {
    if (!saved.disks.some((d) => d.id === id)) {
      throw new ConfigError(`restore: the snapshot has no disk "${id}" (its disks: ${saved.disks.map((d) => d.id).join(', ') || 'none'})`);
    }
  }
  if (req.vsock_socket !== undefined && saved.vsock === undefined) throw new ConfigError('restore: vsock_socket: the snapshot\'s VM has no vsock device');
  const taps = new Map((req.network_overrides ?? []).map((o) => [o.iface_id, o.host_dev_name]));
  for (const id of taps.keys()) {
    if (!(saved.net ?? []).some((n) => n.id === id)) {
      throw new ConfigError(`restore: network_overrides: the snapshot has no network device "${id}" (its network devices: ${(saved.net ?? []).map((n) => n.id).join(', ') || 'none'})`);
    }
  }
  const net = saved.net?.map((n) => {
    const tap = taps.get(n.id);
    if (tap === undefined) return n;
    const { fd: _inherited, ...rest } = n;
    return { ...rest, tap };
  });
  for (const n of net ?? []) {
    if (n.fd !== undefined) {
      throw new ConfigError(`restore: network device ${n.id} used an inherited tap fd, which does not outlive its process: give network_overrides / net.${n.id}=TAP`);
    }
  }
  return {
    ...saved,
    ...(req.vsock_socket === undefined || saved.vsock === undefined ? {} : { vsock: { ...saved.vsock, socket: req.vsock_socket } }),
    ...(net === undefined ? {} : { net }),
    disks: saved.disks.map((d) => {
      const path = newPaths.get(d.id);
      if (path === undefined) return d;
      return { ...d, path, ...(req.backing_files === undefined ? {} : { backing_files: req.backing_files }) };
    }),
  };
}

/** Verifies the snapshot in full, then rebuilds the VM (Paused). */
export async function restoreVm(req: RestoreRequest, hooksFor: (config: VmConfig) => VmHooks): Promise<Vm> {
  const dir = snapshotUrlToPath(req.source_url);
  const snap = await readSnapshot(dir, { knownDeviceTypes: DEVICE_TYPES, configCodec: SNAPSHOT_CONFIG });
  const doc = snap.document;
  const config = restoredConfig(doc.config, req);
  for (const d of config.disks) {
    const saved = doc.disks.find((e) => e.id === d.id);
    if (saved === undefined) throw new ConfigError(`restore: vm.json has no identity for disk "${d.id}"`);
    await checkDiskIdentity(d, saved.identity as unknown as DiskIdentity, req.force ?? false);
  }
  const vcpus = doc.vcpus.map((v, i) => vcpuStateFromJson(fromJsonSafe(v, `vcpus[${i}]`), i));
  const vmState = vmLevelStateFromJson(fromJsonSafe(doc.vm, 'vm'));
  return VmBuilder.restore({
    config,
    regions: snap.regions.map((r) => ({ index: r.index, guestBase: r.guestBase, size: r.size, path: r.path, dataExtents: r.dataExtents })),
    memoryRestoreMode: req.memory_restore_mode ?? 'OnDemand',
    prefault: req.prefault ?? false,
    state: { vcpus, vm: vmState, platform: platformFromEntries(doc.devices) },
  }, hooksFor(config));
}
