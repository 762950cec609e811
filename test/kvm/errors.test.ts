import { describe, expect, it } from 'vitest';
import { KvmError, kvmCall } from '../../src/kvm/errors.js';
import { EINTR, SysError, errnoValue } from '../../src/sys/errno.js';

describe('kvmCall', () => {
  it('makes a call interrupted by a signal (EINTR) again, and returns its result', () => {
    let calls = 0;
    const result = kvmCall('KVM_CREATE_VM', () => {
      calls++;
      if (calls < 3) throw new SysError('ioctl', EINTR);
      return 7;
    });
    expect(result).toBe(7);
    expect(calls).toBe(3);
  });

  it('names the operation and errno of any other failure, at once', () => {
    let calls = 0;
    const fail = () => kvmCall('KVM_SET_USER_MEMORY_REGION', () => {
      calls++;
      throw new SysError('ioctl', errnoValue('EINVAL'));
    });
    expect(fail).toThrow(KvmError);
    expect(fail).toThrow('KVM_SET_USER_MEMORY_REGION failed: EINVAL');
    expect(calls).toBe(2);
  });

  it('gives up on a call that is interrupted every time', () => {
    expect(() => kvmCall('KVM_CREATE_VM', () => { throw new SysError('ioctl', EINTR); })).toThrow('KVM_CREATE_VM failed: EINTR');
  });
});
