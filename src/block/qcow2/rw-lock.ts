/**
 * A readers–writer lock: reads, and overwrites of clusters the image alone owns, run together;
 * anything that may change metadata (allocation, COW, snapshots) runs alone. Writers are served in arrival order
 * and a waiting writer holds back later readers, so a stream of reads cannot starve it.
 */
export class RwLock {
  private readers = 0;
  private writer = false;
  private readonly queue: { exclusive: boolean; wake: () => void }[] = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    if (this.writer || this.queue.length > 0) await new Promise<void>((wake) => this.queue.push({ exclusive: false, wake }));
    else this.readers++;
    try {
      return await fn();
    } finally {
      this.readers--;
      this.dispatch();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.writer || this.readers > 0 || this.queue.length > 0) {
      await new Promise<void>((wake) => this.queue.push({ exclusive: true, wake }));
    } else this.writer = true;
    try {
      return await fn();
    } finally {
      this.writer = false;
      this.dispatch();
    }
  }

  /** Hands the lock to the next waiters: one writer, or every reader up to the next writer. */
  private dispatch(): void {
    if (this.writer) return;
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (next.exclusive) {
        if (this.readers > 0) return;
        this.queue.shift();
        this.writer = true;
        next.wake();
        return;
      }
      this.queue.shift();
      this.readers++;
      next.wake();
    }
  }
}
