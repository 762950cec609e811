import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests boot real VMs whose vCPUs busy-poll in guest ring 3 (the tiny kernel
    // cannot halt there on PVM hosts): on a 2-core machine, files running side by side starve
    // each other's vCPUs and time out. One file at a time keeps timing assertions meaningful.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
