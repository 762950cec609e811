import { existsSync } from 'node:fs';
import { SysError, EACCES, EPERM, ENOENT, E2BIG } from '../sys/errno.js';
import { close, ioctlBuf, ioctlInt, open, O_RDWR } from '../sys/libc.js';
import { KvmError, kvmCall } from './errors.js';
import { KVM_CAPS, KVM_CONSTANTS, KVM_IOCTLS, MAX_CPUID_ENTRIES, type KvmCapName } from './ioctls.js';
import { cpuidBuffer, decodeCpuid2, decodeMsrList, msrListBuffer } from './structs.js';
import type { KvmCpuidEntry2 } from './types.js';
import { VmFd } from './vm.js';

export const KVM_DEVICE = '/dev/kvm';

/**
 * The /dev/kvm system fd: capability queries and VM creation. Owns its fd; `close()` releases it
 * (VMs created from it stay valid: they hold their own fds).
 */
export class Kvm {
  private closed = false;

  private constructor(readonly fd: number) {}

  /** Opens /dev/kvm and checks the API version, with messages that say how to fix the host. */
  static open(path = KVM_DEVICE): Kvm {
    let fd: number;
    try {
      fd = open(path, O_RDWR);
    } catch (e) {
      if (e instanceof SysError && e.errno === ENOENT) {
        throw new KvmError(`${path} does not exist: this host has no KVM (load kvm_intel/kvm_amd or run on a host with virtualization)`, { path, errno: e.errno }, 'ENOKVM');
      }
      if (e instanceof SysError && (e.errno === EACCES || e.errno === EPERM)) {
        throw new KvmError(`permission denied on ${path}: add your user to the kvm group or run as root`, { path, errno: e.errno }, 'ENOKVM');
      }
      if (e instanceof SysError) throw new KvmError(`cannot open ${path}: ${e.errnoName}`, { path, errno: e.errno }, 'ENOKVM');
      throw e;
    }
    const kvm = new Kvm(fd);
    const version = kvmCall('KVM_GET_API_VERSION', () => ioctlInt(fd, KVM_IOCTLS.KVM_GET_API_VERSION));
    if (version !== KVM_CONSTANTS.KVM_API_VERSION) {
      kvm.close();
      throw new KvmError(`${path} speaks KVM API version ${version}, tsvmm needs ${KVM_CONSTANTS.KVM_API_VERSION}`, { version }, 'ENOKVM');
    }
    return kvm;
  }

  /** True when /dev/kvm exists and can be opened read-write by this process. */
  static available(path = KVM_DEVICE): boolean {
    if (!existsSync(path)) return false;
    try {
      Kvm.open(path).close();
      return true;
    } catch {
      return false;
    }
  }

  /** KVM_CHECK_EXTENSION: 0 when unsupported, otherwise a capability-specific positive value. */
  checkExtension(cap: KvmCapName | number): number {
    const n = typeof cap === 'number' ? cap : KVM_CAPS[cap];
    return kvmCall(`KVM_CHECK_EXTENSION(${cap})`, () => ioctlInt(this.fd, KVM_IOCTLS.KVM_CHECK_EXTENSION, n));
  }

  /** Size of the per-vCPU kvm_run mapping. */
  vcpuMmapSize(): number {
    return kvmCall('KVM_GET_VCPU_MMAP_SIZE', () => ioctlInt(this.fd, KVM_IOCTLS.KVM_GET_VCPU_MMAP_SIZE));
  }

  /** KVM_GET_SUPPORTED_CPUID: what this host's KVM can expose to a guest. */
  supportedCpuid(): KvmCpuidEntry2[] {
    const b = cpuidBuffer(MAX_CPUID_ENTRIES);
    kvmCall('KVM_GET_SUPPORTED_CPUID', () => ioctlBuf(this.fd, KVM_IOCTLS.KVM_GET_SUPPORTED_CPUID, b));
    return decodeCpuid2(b);
  }

  /** KVM_GET_MSR_INDEX_LIST: the MSRs a vCPU save/restore should carry. */
  msrIndexList(): number[] {
    return this.msrList(KVM_IOCTLS.KVM_GET_MSR_INDEX_LIST, 'KVM_GET_MSR_INDEX_LIST');
  }

  /** KVM_GET_MSR_FEATURE_INDEX_LIST: feature MSRs (read-only CPU capability MSRs). */
  msrFeatureIndexList(): number[] {
    return this.msrList(KVM_IOCTLS.KVM_GET_MSR_FEATURE_INDEX_LIST, 'KVM_GET_MSR_FEATURE_INDEX_LIST');
  }

  private msrList(request: number, what: string): number[] {
    // Asked with capacity 0 the kernel fails with E2BIG and writes the real count: ask twice.
    const probe = msrListBuffer(0);
    try {
      ioctlBuf(this.fd, request, probe);
      return [];
    } catch (e) {
      if (!(e instanceof SysError && e.errno === E2BIG)) throw KvmError.fromSys(what, e);
    }
    const count = new DataView(probe.buffer).getUint32(0, true);
    const b = msrListBuffer(count);
    kvmCall(what, () => ioctlBuf(this.fd, request, b));
    return decodeMsrList(b);
  }

  /** KVM_CREATE_VM (machine type 0). The VmFd remembers the kvm_run size for its vCPUs. */
  createVm(): VmFd {
    const vmfd = kvmCall('KVM_CREATE_VM', () => ioctlInt(this.fd, KVM_IOCTLS.KVM_CREATE_VM, 0));
    return new VmFd(vmfd, this.vcpuMmapSize());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}
