import { describe, expect, it } from 'vitest';
import { kernelWarnings } from './linux-guest.js';

describe('kernelWarnings', () => {
  it('picks each report with the lines after it, and nothing from a quiet log', () => {
    const log = ['[ 1.0] booting', '[ 2.0] WARNING: CPU: 1 PID: 9 at x.c:1 f+0x1', '[ 2.0] Modules linked in:', '[ 3.0] ok',
      '[ 9.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:', '[ 9.1]  1-...0'].join('\r\n');
    expect(kernelWarnings(log, 2)).toBe(['[ 2.0] WARNING: CPU: 1 PID: 9 at x.c:1 f+0x1', '[ 2.0] Modules linked in:',
      '[ 9.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:', '[ 9.1]  1-...0'].join('\n'));
    expect(kernelWarnings('[ 1.0] booting\n# ')).toBe('');
  });
});
