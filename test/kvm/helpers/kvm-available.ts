import { KVM_DEVICE, Kvm } from '../../../src/kvm/system.js';

/**
 * Whether this host can run the KVM tests, and if not, why. Suites use
 * `describe.skipIf(!kvm.available)` and call `warnIfSkipped` so a skip is loud, never a silent pass.
 */
function probe(): { available: boolean; reason: string } {
  // TSVMM_TEST_KVM_DEVICE=/nonexistent lets one check that a host without KVM skips loudly.
  const device = process.env['TSVMM_TEST_KVM_DEVICE'] ?? KVM_DEVICE;
  try {
    Kvm.open(device).close();
    return { available: true, reason: '' };
  } catch (e) {
    return { available: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

export const kvm = probe();

export function warnIfSkipped(suite: string): void {
  if (kvm.available) return;
  const line = '!'.repeat(100);
  console.warn(`\n${line}\n!! KVM TESTS SKIPPED (${suite}): ${kvm.reason}\n!! These tests did NOT run; nothing about KVM was verified on this host.\n${line}\n`);
}
