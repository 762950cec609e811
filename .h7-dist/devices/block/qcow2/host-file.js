import { open } from 'node:fs/promises';
import { BlockError } from '../backend.js';
import { Qcow2Error } from './errors.js';
/**
 * Positional I/O on one host file. Reads past the end of the file return zeros (a qcow2 file may
 * end inside its last cluster; a raw backing file may be shorter than its overlay).
 */
export class HostFile {
    path;
    handle;
    writable;
    closed = false;
    constructor(path, handle, writable) {
        this.path = path;
        this.handle = handle;
        this.writable = writable;
    }
    static async open(path, writable, create = false) {
        const flags = create ? 'w+' : writable ? 'r+' : 'r';
        try {
            return new HostFile(path, await open(path, flags), writable);
        }
        catch (err) {
            const e = err;
            throw new Qcow2Error(`cannot open ${path}: ${e.code ?? e.message}`, { path, errno: e.code });
        }
    }
    ioError(op, offset, length, err) {
        const e = err;
        return new BlockError(`${op} of ${length} bytes at offset ${offset} of ${this.path} failed: ${e.code ?? e.message}`, { path: this.path, errno: e.code });
    }
    /** Fills `into` from `offset`; bytes beyond the end of the file read as zeros. */
    async readAt(offset, into) {
        try {
            await this.readFully(offset, into);
        }
        catch (err) {
            throw this.ioError('read', offset, into.byteLength, err);
        }
    }
    async writeAt(offset, data) {
        try {
            await this.writeFully(offset, data);
        }
        catch (err) {
            throw this.ioError('write', offset, data.byteLength, err);
        }
    }
    async readFully(offset, into) {
        let done = 0;
        while (done < into.byteLength) {
            const { bytesRead } = await this.handle.read(into, done, into.byteLength - done, offset + done);
            if (bytesRead === 0) {
                into.fill(0, done);
                return;
            }
            done += bytesRead;
        }
    }
    async writeFully(offset, data) {
        let done = 0;
        while (done < data.byteLength) {
            const { bytesWritten } = await this.handle.write(data, done, data.byteLength - done, offset + done);
            done += bytesWritten;
        }
    }
    /** The descriptor, for lseek(SEEK_DATA/SEEK_HOLE) and locks. */
    get fd() {
        return this.handle.fd;
    }
    async length() {
        return (await this.handle.stat()).size;
    }
    /** Bytes actually allocated on the host file system (st_blocks * 512). */
    async allocatedBytes() {
        return (await this.handle.stat()).blocks * 512;
    }
    async truncate(length) {
        await this.handle.truncate(length);
    }
    async datasync() {
        await this.handle.datasync();
    }
    async close() {
        if (this.closed)
            return;
        this.closed = true;
        await this.handle.close();
    }
}
//# sourceMappingURL=host-file.js.map