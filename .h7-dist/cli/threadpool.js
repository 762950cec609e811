/**
 * Imported first by the tsvmm binary. Each disk keeps one libuv pool thread parked in a read of
 * its queue-notify eventfd, and disk I/O runs on the same pool; libuv's default of 4 threads
 * would let two disks starve their own I/O. libuv reads this variable when the pool first starts,
 * which is after every import has been evaluated.
 */
if (process.env.UV_THREADPOOL_SIZE === undefined)
    process.env.UV_THREADPOOL_SIZE = '16';
export {};
//# sourceMappingURL=threadpool.js.map