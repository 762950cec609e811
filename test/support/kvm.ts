import { accessSync, constants, existsSync } from 'node:fs';

/** True when this machine can run KVM guests (the device exists and we may open it). */
export function kvmAvailable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export const hasKvm = kvmAvailable();

/**
 * Call at the top of every KVM test file: when /dev/kvm is missing the suite is skipped, and the
 * skip is announced loudly on stderr rather than passing silently.
 */
export function announceKvmSkip(suite: string): void {
  if (hasKvm) return;
  const why = existsSync('/dev/kvm') ? 'no permission on /dev/kvm' : '/dev/kvm does not exist';
  process.stderr.write(`\n*** SKIPPED KVM TESTS: ${suite} — ${why}; these tests did NOT run ***\n\n`);
}
