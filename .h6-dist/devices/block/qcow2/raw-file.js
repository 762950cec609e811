import { BlockError } from '../backend.js';
import { HostFile } from './host-file.js';
/**
 * The minimal raw-file BlockBackend qcow2 needs for raw backing files and raw convert output.
 * (src/devices/block/raw.ts is the VM-facing raw backend; this one is what the image engine and
 * tsvmm-img use, and can be merged with it.)
 */
export class RawFile {
    path;
    file;
    size;
    readOnly;
    format = 'raw';
    constructor(path, file, size, readOnly) {
        this.path = path;
        this.file = file;
        this.size = size;
        this.readOnly = readOnly;
    }
    static async open(path, readOnly) {
        const file = await HostFile.open(path, !readOnly);
        return new RawFile(path, file, await file.length(), readOnly);
    }
    /** Creates (or truncates) a sparse raw file of `size` bytes. */
    static async create(path, size) {
        const file = await HostFile.open(path, true, true);
        await file.truncate(size);
        return new RawFile(path, file, size, false);
    }
    check(offset, length, write) {
        if (write && this.readOnly)
            throw new BlockError(`${this.path}: image is open read-only`);
        if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
            throw new BlockError(`${this.path}: request [${offset}, +${length}) is outside the ${this.size}-byte disk`);
        }
    }
    /** Whether [offset, offset+length) starts with data or a hole (SEEK_DATA/SEEK_HOLE), and how far. */
    async allocationAt(offset, maxLength) {
        // libc (koffi) loads lazily: most users of this class never ask, and loading it costs ~100 ms.
        const { SEEK_DATA, SEEK_HOLE, lseek } = await import('../../../sys/libc.js');
        const end = Math.min(this.size, offset + maxLength);
        const data = lseek(this.file.fd, offset, SEEK_DATA);
        if (data === -1 || data >= end)
            return { data: false, length: end - offset };
        if (data > offset)
            return { data: false, length: data - offset };
        const hole = lseek(this.file.fd, offset, SEEK_HOLE);
        return { data: true, length: Math.min(end, hole === -1 ? end : hole) - offset };
    }
    async read(offset, into) {
        this.check(offset, into.byteLength, false);
        await this.file.readAt(offset, into);
    }
    async write(offset, data) {
        this.check(offset, data.byteLength, true);
        await this.file.writeAt(offset, data);
    }
    async flush() {
        if (!this.readOnly)
            await this.file.datasync();
    }
    async discard(offset, length) {
        this.check(offset, length, true);
    }
    async writeZeroes(offset, length) {
        this.check(offset, length, true);
        const chunk = new Uint8Array(Math.min(length, 1024 * 1024));
        for (let at = 0; at < length; at += chunk.byteLength) {
            await this.file.writeAt(offset + at, chunk.subarray(0, Math.min(chunk.byteLength, length - at)));
        }
    }
    async close() {
        await this.file.close();
    }
}
//# sourceMappingURL=raw-file.js.map