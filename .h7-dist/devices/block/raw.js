import { open } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { BlockError } from './backend.js';
import { fallocateAsync, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from '../../sys/falloc.js';
import { SysError } from '../../sys/errno.js';
import { koffi } from '../../sys/libc-handle.js';
import { lockImage } from './lock.js';
const EOPNOTSUPP = koffi.os.errno.EOPNOTSUPP ?? 95;
const ZERO_CHUNK = 1 << 20;
/**
 * A raw disk image: guest byte n is file byte n. The size is the file's size when opened; bytes
 * that are inside `size` but past the current end of file (a file another process truncated)
 * read as zeros. Discard punches holes (a hint: filesystems without hole support just keep the
 * data); write-zeroes uses ZERO_RANGE or PUNCH_HOLE and falls back to writing zeros.
 */
export class RawBackend {
    fh;
    path;
    size;
    readOnly;
    format = 'raw';
    closed = false;
    constructor(fh, path, size, readOnly) {
        this.fh = fh;
        this.path = path;
        this.size = size;
        this.readOnly = readOnly;
    }
    static async open(path, options = {}) {
        const readOnly = options.readOnly ?? false;
        let fh;
        try {
            fh = await open(path, readOnly ? fsc.O_RDONLY : fsc.O_RDWR);
        }
        catch (e) {
            const code = e.code ?? String(e);
            throw new BlockError(`cannot open disk image ${path} ${readOnly ? 'read-only' : 'read-write'}: ${code}`, { path, code });
        }
        try {
            const st = await fh.stat();
            if (!st.isFile())
                throw new BlockError(`disk image ${path} is not a regular file`, { path });
            if (options.lock ?? true)
                await lockImage(fh.fd, path, (readOnly ? 'read' : 'write'));
            return new RawBackend(fh, path, st.size, readOnly);
        }
        catch (e) {
            await fh.close();
            throw e;
        }
    }
    /** The open file descriptor (for callers that take further locks or stat it). */
    get fd() {
        return this.fh.fd;
    }
    check(offset, length, op) {
        if (this.closed)
            throw new BlockError(`${op} on closed disk image ${this.path}`);
        if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
            throw new BlockError(`${op} of ${length} bytes at ${offset} is outside disk image ${this.path} (${this.size} bytes)`, { offset, length });
        }
    }
    checkWritable(op) {
        if (this.readOnly)
            throw new BlockError(`${op} on read-only disk image ${this.path}`);
    }
    async read(offset, into) {
        this.check(offset, into.byteLength, 'read');
        let done = 0;
        while (done < into.byteLength) {
            const { bytesRead } = await this.fh.read(into, done, into.byteLength - done, offset + done);
            if (bytesRead === 0) {
                into.fill(0, done); // inside `size` but past end of file
                return;
            }
            done += bytesRead;
        }
    }
    async write(offset, data) {
        this.checkWritable('write');
        this.check(offset, data.byteLength, 'write');
        let done = 0;
        while (done < data.byteLength) {
            const { bytesWritten } = await this.fh.write(data, done, data.byteLength - done, offset + done);
            if (bytesWritten === 0)
                throw new BlockError(`write to disk image ${this.path} made no progress at ${offset + done}`);
            done += bytesWritten;
        }
    }
    async flush() {
        if (this.closed)
            throw new BlockError(`flush on closed disk image ${this.path}`);
        if (!this.readOnly)
            await this.fh.datasync();
    }
    async discard(offset, length) {
        this.checkWritable('discard');
        this.check(offset, length, 'discard');
        if (length === 0)
            return;
        try {
            await fallocateAsync(this.fh.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
        }
        catch (e) {
            // Discard is only a hint: a filesystem without hole punching keeps the data.
            if (e instanceof SysError && e.errno === EOPNOTSUPP)
                return;
            throw this.wrap(e, 'discard');
        }
    }
    async writeZeroes(offset, length, unmap) {
        this.checkWritable('write-zeroes');
        this.check(offset, length, 'write-zeroes');
        if (length === 0)
            return;
        const mode = unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
        try {
            await fallocateAsync(this.fh.fd, mode, offset, length);
            return;
        }
        catch (e) {
            if (!(e instanceof SysError && e.errno === EOPNOTSUPP))
                throw this.wrap(e, 'write-zeroes');
        }
        const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
        for (let done = 0; done < length; done += zeros.byteLength) {
            await this.write(offset + done, zeros.subarray(0, Math.min(zeros.byteLength, length - done)));
        }
    }
    async close() {
        if (this.closed)
            return;
        this.closed = true;
        await this.fh.close();
    }
    wrap(e, op) {
        return new BlockError(`${op} on disk image ${this.path} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
}
//# sourceMappingURL=raw.js.map