/**
 * Routes one vCPU access to the device that claims its address. String port I/O (`rep ins/outs`)
 * arrives as `count` elements of `size` bytes and is replayed element by element, as hardware
 * would see it. Unclaimed reads return all ones, like an empty ISA/PCI bus.
 */
export function makeAccessHandler(pio, mmio, stats) {
    return (kind, address, size, count, data) => {
        switch (kind) {
            case 1 /* AccessKind.PioIn */:
            case 2 /* AccessKind.PioOut */: {
                const hit = pio.resolve(address);
                for (let i = 0; i < count; i++) {
                    const el = data.subarray(i * size, (i + 1) * size);
                    if (hit === undefined) {
                        stats.unclaimed++;
                        if (kind === 1 /* AccessKind.PioIn */)
                            el.fill(0xff);
                    }
                    else if (kind === 1 /* AccessKind.PioIn */) {
                        hit.device.pioRead(hit.offset, el);
                    }
                    else {
                        hit.device.pioWrite(hit.offset, el);
                    }
                }
                return;
            }
            case 3 /* AccessKind.MmioRead */:
            case 4 /* AccessKind.MmioWrite */: {
                const el = data.subarray(0, size);
                const hit = mmio.resolve(address);
                if (hit === undefined) {
                    stats.unclaimed++;
                    if (kind === 3 /* AccessKind.MmioRead */)
                        el.fill(0xff);
                }
                else if (kind === 3 /* AccessKind.MmioRead */) {
                    hit.device.mmioRead(hit.offset, el);
                }
                else {
                    hit.device.mmioWrite(hit.offset, el);
                }
                return;
            }
        }
    };
}
//# sourceMappingURL=io-dispatch.js.map