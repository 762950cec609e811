import { TsvmmError } from '../../errors.js';

/**
 * A qcow2 image that tsvmm cannot or must not use as asked: an unsupported feature, a corrupt
 * structure, a refused writable open. `details.feature` names the feature when there is one.
 */
export class Qcow2Error extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('EQCOW2', message, details);
  }
}
