export class JobCancelled extends Error {
    constructor() {
        super('cancelled');
    }
}
export class BlockJob {
    rateLimit;
    info;
    cancelRequested = false;
    copied = 0;
    startedAt = performance.now();
    done = Promise.resolve();
    constructor(id, type, disk, top, base, rateLimit) {
        this.rateLimit = rateLimit;
        this.info = { id, type, disk, state: 'running', done: 0, total: 0, top, base, started: new Date().toISOString() };
    }
    get cancelled() {
        return this.cancelRequested;
    }
    requestCancel() {
        this.cancelRequested = true;
    }
    /** Throws JobCancelled once cancellation was asked for. */
    checkCancelled() {
        if (this.cancelRequested)
            throw new JobCancelled();
    }
    progress(done, total) {
        this.info.done = done;
        this.info.total = total;
    }
    /** Counts copied bytes and sleeps as long as needed to stay under the rate limit. */
    async copiedBytes(n) {
        this.copied += n;
        if (this.rateLimit <= 0)
            return;
        const due = (this.copied / this.rateLimit) * 1000 - (performance.now() - this.startedAt);
        if (due > 0)
            await new Promise((r) => setTimeout(r, due));
    }
    finish(state, error) {
        this.info.state = state;
        this.info.finished = new Date().toISOString();
        const seconds = (performance.now() - this.startedAt) / 1000;
        this.info.bytes_per_second = seconds > 0 ? Math.round(this.copied / seconds) : 0;
        if (error !== undefined)
            this.info.error = error;
    }
    get bytesCopied() {
        return this.copied;
    }
}
//# sourceMappingURL=job.js.map