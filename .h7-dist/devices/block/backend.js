import { TsvmmError } from '../../errors.js';
/** An I/O failure of a disk image (the request fails; the VMM keeps running). */
export class BlockError extends TsvmmError {
    constructor(message, details) {
        super('EBLOCK', message, details);
    }
}
//# sourceMappingURL=backend.js.map