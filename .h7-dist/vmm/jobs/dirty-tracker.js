export class DirtyTracker {
    inner;
    clusterSize;
    dirty = new Set();
    constructor(inner, clusterSize) {
        this.inner = inner;
        this.clusterSize = clusterSize;
    }
    get size() { return this.inner.size; }
    get readOnly() { return this.inner.readOnly; }
    get format() { return this.inner.format; }
    get path() { return this.inner.path; }
    /** Clusters changed since the last `take()`, in ascending order; the set starts empty again. */
    take() {
        const out = [...this.dirty].sort((a, b) => a - b);
        this.dirty.clear();
        return out;
    }
    get dirtyCount() {
        return this.dirty.size;
    }
    mark(offset, length) {
        if (length <= 0)
            return;
        const last = Math.floor((offset + length - 1) / this.clusterSize);
        for (let c = Math.floor(offset / this.clusterSize); c <= last; c++)
            this.dirty.add(c);
    }
    read(offset, into) {
        return this.inner.read(offset, into);
    }
    async write(offset, data) {
        try {
            await this.inner.write(offset, data);
        }
        finally {
            this.mark(offset, data.byteLength);
        }
    }
    flush() {
        return this.inner.flush();
    }
    async discard(offset, length) {
        try {
            await this.inner.discard(offset, length);
        }
        finally {
            this.mark(offset, length);
        }
    }
    async writeZeroes(offset, length, unmap) {
        try {
            await this.inner.writeZeroes(offset, length, unmap);
        }
        finally {
            this.mark(offset, length);
        }
    }
    close() {
        return this.inner.close();
    }
}
//# sourceMappingURL=dirty-tracker.js.map