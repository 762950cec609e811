import { defineConfig } from 'vitest/config';
import { NESTED, NESTED_RETRIES } from './test/support/nested-retry.js';
import { deadline } from './test/support/timing.js';

/**
 * Test files that need /dev/kvm (they start guests). `npm test` (tools/test.mjs) runs them on
 * /dev/kvm where it exists and otherwise nested, inside a QEMU TCG VM that offers KVM
 * (tools/nested/run.mjs); every other file is the `unit` project and runs natively.
 */
export const KVM_TESTS = [
  'test/integration/**/*.test.ts',
  'test/guest/**/*.test.ts',
  'test/linux/**/*.test.ts',
  'test/kvm/kvm.test.ts',
  'test/kvm/vcpu-worker.test.ts',
  'test/vmm/api/real-vmm.kvm.test.ts',
];

export default defineConfig({
  test: {
    // Integration tests boot real VMs: on a 2-core machine (and nested under TCG) files running
    // side by side starve each other's vCPUs. One file at a time.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: KVM_TESTS } },
      {
        extends: true,
        test: {
          name: 'kvm',
          include: KVM_TESTS,
          globalSetup: ['test/support/require-kvm.ts'],
          // Nested KVM is 10-30x slower than a KVM host (test/support/timing.ts).
          testTimeout: deadline(120_000),
          // Nested under QEMU's TCG, guests were seen to fail at random, rarely (a CI run of 123
          // tests had 3 triple faults at unrelated points, none of which reproduced in 40 boots
          // of the same workloads): there a failed test runs up to twice more, and every retry is
          // printed and counted in npm test's summary (test/support/nested-retry.ts).
          retry: NESTED ? NESTED_RETRIES : 0,
          hookTimeout: deadline(120_000),
        },
      },
    ],
  },
});
