import { expect, test } from 'vitest';
// @ts-expect-error: a plain ES module of the project's tools, without types
import { softLockupSeconds } from '../../tools/nested/run.mjs';

test('the nested runner reads how long the nested host\'s kernel says a CPU has been stuck', () => {
  expect(softLockupSeconds('[ 1977.139324] watchdog: BUG: soft lockup - CPU#1 stuck for 417s! [node:2302]')).toBe(417);
  expect(softLockupSeconds('watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [kworker/0:1:12]')).toBe(26);
  expect(softLockupSeconds(' ✓  kvm  test/linux/restore.test.ts > 1 vCPU, lazy restore 26883ms')).toBeUndefined();
  expect(softLockupSeconds('rcu: INFO: rcu_preempt detected stalls on CPUs/tasks')).toBeUndefined();
});
