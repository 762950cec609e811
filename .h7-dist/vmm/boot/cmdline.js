import { CommandLineError } from './errors.js';
function sizeParam(size) {
    return size % 1024 === 0 ? `${size / 1024}K` : `${size}`;
}
/** `virtio_mmio.device=4K@0xd0000000:5` — the syntax of Linux's virtio_mmio and of QEMU microvm. */
export function virtioMmioParams(devices) {
    return devices.map((d) => `virtio_mmio.device=${sizeParam(d.size)}@0x${d.base.toString(16)}:${d.gsi}`);
}
export function composeCommandLine(base, devices, appendVirtio) {
    const parts = [base.trim(), ...(appendVirtio ? virtioMmioParams(devices) : [])].filter((s) => s.length > 0);
    return parts.join(' ');
}
/** Encodes the command line, checking it for NULs and against `limit` (bytes, without the NUL). */
export function encodeCommandLine(cmdline, limit) {
    const bytes = new TextEncoder().encode(cmdline);
    if (bytes.includes(0))
        throw new CommandLineError('kernel command line contains a NUL byte');
    if (bytes.length > limit) {
        throw new CommandLineError(`kernel command line is ${bytes.length} bytes; this kernel accepts at most ${limit}`, { length: bytes.length, limit });
    }
    const out = new Uint8Array(bytes.length + 1);
    out.set(bytes);
    return out;
}
export function writeCommandLine(memory, addr, cmdline, limit) {
    const bytes = encodeCommandLine(cmdline, limit);
    memory.write(addr, bytes);
    return bytes.length - 1;
}
//# sourceMappingURL=cmdline.js.map