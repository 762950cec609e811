import { TsvmmError } from '../../errors.js';

/** The kernel image is not something tsvmm can boot: unknown format, truncated, wrong arch, too old. */
export class KernelFormatError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('EKERNELFORMAT', message, details);
  }
}

/** The guest does not fit: too little RAM, too many vCPUs or devices, overlapping placements. */
export class BootLayoutError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('EBOOTLAYOUT', message, details);
  }
}

/** The kernel command line is too long for the kernel or contains bytes it cannot carry. */
export class CommandLineError extends TsvmmError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ECMDLINE', message, details);
  }
}
