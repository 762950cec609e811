import { ConflictError } from '../errors.js';
import type { Concurrency } from './route.js';

/**
 * Serialises state-changing requests for the one VM: at most one runs at a time. An `exclusive`
 * request that arrives while another is running or waiting is refused at once with a
 * ConflictError (HTTP 409) instead of waiting, because its meaning depends on the state the
 * running one leaves behind (pause during a snapshot, a second boot during boot). A `queued`
 * request (shutdown) waits its turn: whatever runs first, the user's intent is the same.
 */
export class OperationQueue {
  private tail: Promise<void> = Promise.resolve();
  private readonly pending: string[] = [];

  /** Names of the operations running or waiting, oldest first (for messages and tests). */
  get inProgress(): readonly string[] {
    return this.pending;
  }

  submit<T>(name: string, concurrency: Concurrency, op: () => Promise<T>): Promise<T> {
    const blocking = this.pending[0];
    if (concurrency === 'exclusive' && blocking !== undefined) {
      return Promise.reject(
        new ConflictError(`${name} conflicts with ${blocking}, which is still in progress; retry when it has finished`, {
          in_progress: blocking,
        }),
      );
    }
    this.pending.push(name);
    const run = this.tail.then(op);
    // The queue's own chain must never reject, or one failure would poison every later request.
    this.tail = run.then(
      () => this.finish(name),
      () => this.finish(name),
    );
    return run;
  }

  private finish(name: string): void {
    const i = this.pending.indexOf(name);
    if (i >= 0) this.pending.splice(i, 1);
  }
}
