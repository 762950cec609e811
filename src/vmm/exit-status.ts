/**
 * Why a VM ended, and the process exit status `tsvmm` reports for it. A guest power-off carries
 * the guest's own status (the isa-debug-exit-style port 0xf4); the others have fixed statuses so
 * scripts can tell a clean power-off from a reset, a crash or a signal.
 */
export type VmEnd =
  | { kind: 'poweroff'; status: number }
  | { kind: 'reset' }
  | { kind: 'triple_fault'; vcpu: number; where: string }
  | { kind: 'vcpu_error'; vcpu: number; message: string }
  | { kind: 'signal'; signal: 'SIGINT' | 'SIGTERM' }
  | { kind: 'requested' };

export const EXIT_STATUS = {
  /** vm.shutdown / vmm.shutdown from the API. */
  requested: 0,
  /** Bad flags or configuration. */
  usage: 2,
  /** tsvmm itself failed (cannot open /dev/kvm, cannot read the kernel, ...). */
  vmmError: 1,
  /** The guest asked for a reset (i8042 0xFE, or a KVM reset system event). */
  reset: 120,
  /** The guest triple-faulted (KVM_EXIT_SHUTDOWN). */
  tripleFault: 121,
  /** KVM could not run a vCPU (internal error, failed entry). */
  vcpuError: 122,
  SIGINT: 130,
  SIGTERM: 143,
} as const;

export function exitStatusOf(end: VmEnd): number {
  switch (end.kind) {
    case 'poweroff': return end.status & 0xff;
    case 'reset': return EXIT_STATUS.reset;
    case 'triple_fault': return EXIT_STATUS.tripleFault;
    case 'vcpu_error': return EXIT_STATUS.vcpuError;
    case 'signal': return EXIT_STATUS[end.signal];
    case 'requested': return EXIT_STATUS.requested;
  }
}

export function describeEnd(end: VmEnd): string {
  switch (end.kind) {
    case 'poweroff': return `guest powered off with status ${end.status & 0xff}`;
    case 'reset': return 'guest requested a reset';
    case 'triple_fault': return `guest triple-faulted (KVM_EXIT_SHUTDOWN) on vCPU ${end.vcpu} at ${end.where}`;
    case 'vcpu_error': return `vCPU ${end.vcpu} stopped: ${end.message}`;
    case 'signal': return `received ${end.signal}`;
    case 'requested': return 'shutdown requested';
  }
}
