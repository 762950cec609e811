/**
 * Deadlines for tests that start guests. Nested KVM under QEMU's TCG (tools/nested/run.mjs sets
 * TSVMM_NESTED=1) runs everything 10-30x slower than a KVM host, and two QEMU vCPU threads share
 * two cores with everything else: a deadline that means "this hangs" on a KVM host would fail a
 * healthy nested run. Deadlines only: no test asserts speed (benchmarks in bench/ do).
 * TSVMM_TIME_SCALE overrides the factor.
 */
export const TIME_SCALE = Number(process.env['TSVMM_TIME_SCALE'] ?? (process.env['TSVMM_NESTED'] === '1' ? 10 : 1));

/** `ms` of a KVM host, scaled for where the test runs. */
export function deadline(ms: number): number {
  return ms * TIME_SCALE;
}

/**
 * Resolves once `cond()` holds, polling every `pollMs`; throws, naming `what`, when it has not
 * within `ms`. `cond` may be async (e.g. an attempt to connect).
 */
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition', pollMs = 5): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what} not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
