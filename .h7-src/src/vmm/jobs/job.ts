/** One background block job: its public status, cancellation, and rate limiting. */
import type { BlockJobInfo, BlockJobState } from './types.js';

export class JobCancelled extends Error {
  constructor() {
    super('cancelled');
  }
}

export class BlockJob {
  readonly info: BlockJobInfo;
  private cancelRequested = false;
  private copied = 0;
  private readonly startedAt = performance.now();
  done: Promise<void> = Promise.resolve();

  constructor(id: string, type: BlockJobInfo['type'], disk: string, top: string, base: string | null, private readonly rateLimit: number) {
    this.info = { id, type, disk, state: 'running', done: 0, total: 0, top, base, started: new Date().toISOString() };
  }

  get cancelled(): boolean {
    return this.cancelRequested;
  }

  requestCancel(): void {
    this.cancelRequested = true;
  }

  /** Throws JobCancelled once cancellation was asked for. */
  checkCancelled(): void {
    if (this.cancelRequested) throw new JobCancelled();
  }

  progress(done: number, total: number): void {
    this.info.done = done;
    this.info.total = total;
  }

  /** Counts copied bytes and sleeps as long as needed to stay under the rate limit. */
  async copiedBytes(n: number): Promise<void> {
    this.copied += n;
    if (this.rateLimit <= 0) return;
    const due = (this.copied / this.rateLimit) * 1000 - (performance.now() - this.startedAt);
    if (due > 0) await new Promise((r) => setTimeout(r, due));
  }

  finish(state: BlockJobState, error?: string): void {
    this.info.state = state;
    this.info.finished = new Date().toISOString();
    const seconds = (performance.now() - this.startedAt) / 1000;
    this.info.bytes_per_second = seconds > 0 ? Math.round(this.copied / seconds) : 0;
    if (error !== undefined) this.info.error = error;
  }

  get bytesCopied(): number {
    return this.copied;
  }
}
