import { describe, expect, test } from 'vitest';
import { EXIT_STATUS, describeEnd, exitStatusOf, type VmEnd } from '../../src/vmm/exit-status.js';

describe('how a VM ended: exit status and the line tsvmm prints', () => {
  test.each<[VmEnd, number, string]>([
    [{ kind: 'poweroff', status: 0x104 }, 4, 'guest powered off with status 4'],
    [{ kind: 'reset' }, EXIT_STATUS.reset, 'guest requested a reset'],
    [{ kind: 'triple_fault', vcpu: 1, where: 'rip 0xffffffff81000000 cs 0x10' }, EXIT_STATUS.tripleFault, 'guest triple-faulted (KVM_EXIT_SHUTDOWN) on vCPU 1 at rip 0xffffffff81000000 cs 0x10'],
    [{ kind: 'vcpu_error', vcpu: 0, message: 'KVM entry failed: 7' }, EXIT_STATUS.vcpuError, 'vCPU 0 stopped: KVM entry failed: 7'],
    [{ kind: 'signal', signal: 'SIGTERM' }, 143, 'received SIGTERM'],
    [{ kind: 'requested' }, 0, 'shutdown requested'],
  ])('%j', (end, status, line) => {
    expect(exitStatusOf(end)).toBe(status);
    expect(describeEnd(end)).toBe(line);
  });
});
