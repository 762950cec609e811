import { TsvmmError } from '../errors.js';
/** A guest access that falls outside guest RAM, or spans a gap between regions. */
export class GuestMemoryError extends TsvmmError {
    constructor(message, details) {
        super('EGUESTMEM', message, details);
    }
}
/**
 * Guest-physical memory: a validated, sorted, non-overlapping list of regions, with bounds
 * checks as the API. Guest addresses are JS numbers (exact up to 2^53, far above any RAM size).
 * Every address and length coming from the guest goes through `checkRange`/`slice`, which throw
 * GuestMemoryError instead of touching anything outside RAM.
 */
export class GuestMemory {
    regions;
    views;
    constructor(regions) {
        const sorted = [...regions].sort((a, b) => a.guestBase - b.guestBase);
        for (let i = 0; i < sorted.length; i++) {
            const r = sorted[i];
            if (r.size <= 0 || r.bytes.byteLength !== r.size) {
                throw new GuestMemoryError(`region ${r.index} has size ${r.size} but a view of ${r.bytes.byteLength} bytes`);
            }
            const prev = sorted[i - 1];
            if (prev !== undefined && prev.guestBase + prev.size > r.guestBase) {
                throw new GuestMemoryError(`regions ${prev.index} and ${r.index} overlap`);
            }
        }
        if (sorted.length === 0)
            throw new GuestMemoryError('guest memory needs at least one region');
        this.regions = sorted;
        this.views = sorted.map((r) => new DataView(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength));
    }
    /** Total RAM in bytes. */
    get totalSize() {
        return this.regions.reduce((n, r) => n + r.size, 0);
    }
    describe() {
        return {
            regions: this.regions.map((r) => ({ index: r.index, guestBase: r.guestBase, size: r.size, hostAddress: r.hostAddress })),
        };
    }
    /** Index into `regions` of the region holding [gpa, gpa+len), or -1. */
    find(gpa, len) {
        if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || gpa < 0 || len < 0)
            return -1;
        const rs = this.regions;
        for (let i = 0; i < rs.length; i++) {
            const r = rs[i];
            if (gpa >= r.guestBase && gpa + len <= r.guestBase + r.size)
                return i;
        }
        return -1;
    }
    locate(gpa, len) {
        const i = this.find(gpa, len);
        if (i < 0) {
            throw new GuestMemoryError(`guest range 0x${gpa.toString(16)}+0x${len.toString(16)} is not inside guest RAM`, { gpa, len });
        }
        return i;
    }
    /** True when [gpa, gpa+len) lies inside one region. */
    contains(gpa, len) {
        return this.find(gpa, len) >= 0;
    }
    /** Throws GuestMemoryError unless [gpa, gpa+len) lies inside one region. */
    checkRange(gpa, len) {
        this.locate(gpa, len);
    }
    /** A live view (no copy) of [gpa, gpa+len); writes through it reach the guest. */
    slice(gpa, len) {
        const r = this.regions[this.locate(gpa, len)];
        const off = gpa - r.guestBase;
        return r.bytes.subarray(off, off + len);
    }
    read(gpa, len) {
        return this.slice(gpa, len).slice();
    }
    write(gpa, data) {
        this.slice(gpa, data.byteLength).set(data);
    }
    fill(gpa, len, value = 0) {
        this.slice(gpa, len).fill(value);
    }
    dv(gpa, len) {
        const i = this.locate(gpa, len);
        return [this.views[i], gpa - this.regions[i].guestBase];
    }
    readU8(gpa) { const [v, o] = this.dv(gpa, 1); return v.getUint8(o); }
    readU16(gpa) { const [v, o] = this.dv(gpa, 2); return v.getUint16(o, true); }
    readU32(gpa) { const [v, o] = this.dv(gpa, 4); return v.getUint32(o, true); }
    readU64(gpa) { const [v, o] = this.dv(gpa, 8); return v.getBigUint64(o, true); }
    writeU8(gpa, x) { const [v, o] = this.dv(gpa, 1); v.setUint8(o, x); }
    writeU16(gpa, x) { const [v, o] = this.dv(gpa, 2); v.setUint16(o, x, true); }
    writeU32(gpa, x) { const [v, o] = this.dv(gpa, 4); v.setUint32(o, x, true); }
    writeU64(gpa, x) { const [v, o] = this.dv(gpa, 8); v.setBigUint64(o, x, true); }
}
/** Builds a GuestMemory over plain JS buffers: for unit tests and pure logic, no mmap. */
export function anonymousGuestMemory(layout) {
    return new GuestMemory(layout.map((l, index) => ({ index, guestBase: l.guestBase, size: l.size, hostAddress: 0n, bytes: new Uint8Array(l.size) })));
}
//# sourceMappingURL=guest-memory.js.map