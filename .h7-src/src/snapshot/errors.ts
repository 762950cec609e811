import { TsvmmError } from '../errors.js';

/**
 * Anything wrong with a snapshot directory or its contents: missing or truncated files, checksum
 * mismatches, unsupported versions, malformed or inconsistent vm.json, undecodable state fields.
 * `file` names the file (or directory) at fault so the message tells the user where to look.
 */
export class SnapshotError extends TsvmmError {
  readonly file: string | undefined;

  constructor(message: string, details?: Record<string, unknown> & { file?: string }) {
    super('ESNAPSHOT', message, details);
    this.file = details?.file;
  }
}
