import { TsvmmError } from '../../errors.js';

/**
 * Errors of disk snapshots, checkpoints and the snapshot catalogue. Codes: ECHECKPOINT (the
 * operation failed; the VM keeps running on the images it had), ENOSNAPSHOT (no such name in the
 * catalogue; the message lists the names that exist).
 */
export class CheckpointError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ECHECKPOINT', message, details);
  }
}

export class UnknownSnapshotError extends TsvmmError {
  constructor(name: string, known: readonly string[]) {
    super('ENOSNAPSHOT', `no snapshot named "${name}" (known: ${known.length === 0 ? 'none' : known.join(', ')}); see snapshot-list`, { name });
  }
}
