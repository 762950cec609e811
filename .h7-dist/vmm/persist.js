/**
 * Snapshot and restore of a whole VM: gathers component state from a paused Vm into the
 * snapshot format (src/snapshot/), and rebuilds a paused Vm from a verified snapshot directory.
 */
import { ConfigError } from '../errors.js';
import { dataExtentsOf, fromJsonSafe, readSnapshot, snapshotUrlToPath, toJsonSafe, writeSnapshot } from '../snapshot/index.js';
import { checkDiskIdentity, diskIdentity } from './disk-identity.js';
import { Vm } from './vm.js';
/** Device types this VMM can rebuild from a snapshot. */
export const DEVICE_TYPES = ['serial', 'i8042', 'virtio-blk'];
function deviceEntries(p) {
    const out = {};
    // Device states are JSON-safe by contract (Snapshottable); the round trip drops anything else.
    const json = (v) => JSON.parse(JSON.stringify(v));
    if (p.serial !== undefined)
        out['serial'] = { type: 'serial', state: json(p.serial) };
    out['i8042'] = { type: 'i8042', state: json(p.i8042) };
    for (const [id, s] of Object.entries(p.disks))
        out[`disk:${id}`] = { type: 'virtio-blk', state: json(s) };
    return out;
}
function platformFromEntries(devices) {
    const p = { i8042: undefined, disks: {} };
    for (const [name, e] of Object.entries(devices)) {
        if (e.type === 'serial')
            p.serial = e.state;
        else if (e.type === 'i8042')
            p.i8042 = e.state;
        else if (e.type === 'virtio-blk')
            p.disks[name.replace(/^disk:/, '')] = e.state;
    }
    if (p.i8042 === undefined)
        throw new ConfigError('the snapshot has no i8042 device state');
    return p;
}
/** Writes a snapshot of a paused VM to `url` (file:///dir); the VM stays paused. */
export async function snapshotVm(vm, url) {
    const dir = snapshotUrlToPath(url);
    const saved = await vm.saveState();
    // Everything the guest wrote must be in the image before its identity is recorded.
    await Promise.all(vm.platform.disks.map((d) => d.backend.flush()));
    const disks = [];
    for (const d of vm.platform.disks) {
        disks.push({ id: d.config.id, path: d.config.path, identity: await diskIdentity(d.config.path) });
    }
    const result = await writeSnapshot(dir, {
        config: vm.config,
        vcpus: saved.vcpus.map((v) => toJsonSafe(v)),
        vm: toJsonSafe(saved.vm),
        devices: deviceEntries(saved.platform),
        disks,
        memory: vm.regions.map((r) => {
            const source = { guestBase: r.guestBase, size: r.size, bytes: r.bytes };
            if (r.memfd !== null)
                source.dataExtents = dataExtentsOf(r.memfd, r.size);
            return source;
        }),
    });
    return {
        destination: result.dir,
        memory_bytes_written: result.regions.reduce((n, r) => n + r.dataBytes, 0),
        memory_bytes_allocated: result.regions.reduce((n, r) => n + r.allocatedBytes, 0),
    };
}
/** Verifies the snapshot in full, then rebuilds the VM (Paused). */
export async function restoreVm(req, hooksFor) {
    const dir = snapshotUrlToPath(req.source_url);
    const snap = await readSnapshot(dir, { knownDeviceTypes: DEVICE_TYPES });
    const doc = snap.document;
    const config = structuredClone(doc.config);
    for (const [id, path] of Object.entries(req.disk_paths ?? {})) {
        const disk = config.disks.find((d) => d.id === id);
        if (disk === undefined)
            throw new ConfigError(`restore: the snapshot has no disk "${id}" (its disks: ${config.disks.map((d) => d.id).join(', ') || 'none'})`);
        disk.path = path;
    }
    for (const d of config.disks) {
        const saved = doc.disks.find((e) => e.id === d.id);
        if (saved === undefined)
            throw new ConfigError(`restore: vm.json has no identity for disk "${d.id}"`);
        await checkDiskIdentity(d, saved.identity, req.force ?? false);
    }
    const vcpus = doc.vcpus.map((v, i) => fromJsonSafe(v, `vcpus[${i}]`));
    const vmState = fromJsonSafe(doc.vm, 'vm');
    return Vm.restore({
        config,
        regions: snap.regions.map((r) => ({ index: r.index, guestBase: r.guestBase, size: r.size, path: r.path, dataExtents: r.dataExtents })),
        prefault: req.prefault ?? false,
        state: { vcpus, vm: vmState, platform: platformFromEntries(doc.devices) },
    }, hooksFor(config));
}
//# sourceMappingURL=persist.js.map