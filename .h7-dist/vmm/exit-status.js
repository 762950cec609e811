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
};
export function exitStatusOf(end) {
    switch (end.kind) {
        case 'poweroff': return end.status & 0xff;
        case 'reset': return EXIT_STATUS.reset;
        case 'triple_fault': return EXIT_STATUS.tripleFault;
        case 'vcpu_error': return EXIT_STATUS.vcpuError;
        case 'signal': return EXIT_STATUS[end.signal];
        case 'requested': return EXIT_STATUS.requested;
    }
}
export function describeEnd(end) {
    switch (end.kind) {
        case 'poweroff': return `guest powered off with status ${end.status & 0xff}`;
        case 'reset': return 'guest requested a reset';
        case 'triple_fault': return 'guest triple-faulted (KVM_EXIT_SHUTDOWN)';
        case 'vcpu_error': return `vCPU ${end.vcpu} stopped: ${end.message}`;
        case 'signal': return `received ${end.signal}`;
        case 'requested': return 'shutdown requested';
    }
}
//# sourceMappingURL=exit-status.js.map