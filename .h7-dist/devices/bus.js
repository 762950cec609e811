/** Address-range dispatch table; ranges may not overlap. Unclaimed accesses read as all-ones. */
export class Bus {
    ranges = [];
    insert(name, base, size, device) {
        for (const r of this.ranges) {
            if (base < r.base + r.size && r.base < base + size) {
                throw new Error(`bus range ${name} 0x${base.toString(16)}+0x${size.toString(16)} overlaps ${r.name}`);
            }
        }
        this.ranges.push({ base, size, device, name });
        this.ranges.sort((a, b) => a.base - b.base);
    }
    /** The device covering `addr` and the offset into it, or undefined. */
    resolve(addr) {
        for (const r of this.ranges) {
            if (addr >= r.base && addr < r.base + r.size)
                return { device: r.device, offset: addr - r.base };
        }
        return undefined;
    }
}
//# sourceMappingURL=bus.js.map