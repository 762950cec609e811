import { SIZES } from './structs.js';

/**
 * The one table of KVM ioctl numbers, computed the way <asm-generic/ioctl.h> does from the
 * direction, the KVM type byte (0xAE), the command number and the argument struct's size.
 * native-shims/kvm_layout.c prints the kernel header's values; test/kvm/layout.test.ts compares.
 */
const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;
const KVMIO = 0xae;

function ioc(dir: number, type: number, nr: number, size: number): number {
  // >>> 0 keeps the result an unsigned 32-bit number (READ|WRITE sets bit 31).
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
const io = (nr: number): number => ioc(IOC_NONE, KVMIO, nr, 0);
const ior = (nr: number, size: number): number => ioc(IOC_READ, KVMIO, nr, size);
const iow = (nr: number, size: number): number => ioc(IOC_WRITE, KVMIO, nr, size);
const iowr = (nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, KVMIO, nr, size);

export const KVM_IOCTLS = {
  // /dev/kvm
  KVM_GET_API_VERSION: io(0x00),
  KVM_CREATE_VM: io(0x01),
  KVM_GET_MSR_INDEX_LIST: iowr(0x02, SIZES.kvm_msr_list),
  KVM_CHECK_EXTENSION: io(0x03),
  KVM_GET_VCPU_MMAP_SIZE: io(0x04),
  KVM_GET_SUPPORTED_CPUID: iowr(0x05, SIZES.kvm_cpuid2),
  KVM_GET_MSR_FEATURE_INDEX_LIST: iowr(0x0a, SIZES.kvm_msr_list),
  // VM
  KVM_CREATE_VCPU: io(0x41),
  KVM_GET_DIRTY_LOG: iow(0x42, SIZES.kvm_dirty_log),
  KVM_SET_USER_MEMORY_REGION: iow(0x46, SIZES.kvm_userspace_memory_region),
  KVM_SET_TSS_ADDR: io(0x47),
  KVM_SET_IDENTITY_MAP_ADDR: iow(0x48, 8),
  KVM_CREATE_IRQCHIP: io(0x60),
  KVM_IRQ_LINE: iow(0x61, SIZES.kvm_irq_level),
  KVM_GET_IRQCHIP: iowr(0x62, SIZES.kvm_irqchip),
  KVM_SET_IRQCHIP: ior(0x63, SIZES.kvm_irqchip),
  KVM_IRQ_LINE_STATUS: iowr(0x67, SIZES.kvm_irq_level),
  KVM_IRQFD: iow(0x76, SIZES.kvm_irqfd),
  KVM_CREATE_PIT2: iow(0x77, SIZES.kvm_pit_config),
  KVM_IOEVENTFD: iow(0x79, SIZES.kvm_ioeventfd),
  KVM_SET_CLOCK: iow(0x7b, SIZES.kvm_clock_data),
  KVM_GET_CLOCK: ior(0x7c, SIZES.kvm_clock_data),
  KVM_GET_PIT2: ior(0x9f, SIZES.kvm_pit_state2),
  KVM_SET_PIT2: iow(0xa0, SIZES.kvm_pit_state2),
  KVM_ENABLE_CAP: iow(0xa3, SIZES.kvm_enable_cap),
  // vCPU
  KVM_RUN: io(0x80),
  KVM_GET_REGS: ior(0x81, SIZES.kvm_regs),
  KVM_SET_REGS: iow(0x82, SIZES.kvm_regs),
  KVM_GET_SREGS: ior(0x83, SIZES.kvm_sregs),
  KVM_SET_SREGS: iow(0x84, SIZES.kvm_sregs),
  KVM_GET_MSRS: iowr(0x88, SIZES.kvm_msrs),
  KVM_SET_MSRS: iow(0x89, SIZES.kvm_msrs),
  KVM_GET_FPU: ior(0x8c, SIZES.kvm_fpu),
  KVM_SET_FPU: iow(0x8d, SIZES.kvm_fpu),
  KVM_GET_LAPIC: ior(0x8e, SIZES.kvm_lapic_state),
  KVM_SET_LAPIC: iow(0x8f, SIZES.kvm_lapic_state),
  KVM_SET_CPUID2: iow(0x90, SIZES.kvm_cpuid2),
  KVM_GET_CPUID2: iowr(0x91, SIZES.kvm_cpuid2),
  KVM_GET_MP_STATE: ior(0x98, SIZES.kvm_mp_state),
  KVM_SET_MP_STATE: iow(0x99, SIZES.kvm_mp_state),
  KVM_GET_VCPU_EVENTS: ior(0x9f, SIZES.kvm_vcpu_events),
  KVM_SET_VCPU_EVENTS: iow(0xa0, SIZES.kvm_vcpu_events),
  KVM_GET_DEBUGREGS: ior(0xa1, SIZES.kvm_debugregs),
  KVM_SET_DEBUGREGS: iow(0xa2, SIZES.kvm_debugregs),
  KVM_SET_TSC_KHZ: io(0xa2),
  KVM_GET_TSC_KHZ: io(0xa3),
  KVM_GET_XSAVE: ior(0xa4, SIZES.kvm_xsave),
  KVM_SET_XSAVE: iow(0xa5, SIZES.kvm_xsave),
  KVM_GET_XCRS: ior(0xa6, SIZES.kvm_xcrs),
  KVM_SET_XCRS: iow(0xa7, SIZES.kvm_xcrs),
  KVM_KVMCLOCK_CTRL: io(0xad),
} as const;

export type KvmIoctlName = keyof typeof KVM_IOCTLS;

/** KVM_CHECK_EXTENSION capability numbers used by tsvmm. */
export const KVM_CAPS = {
  KVM_CAP_IRQCHIP: 0,
  KVM_CAP_HLT: 1,
  KVM_CAP_USER_MEMORY: 3,
  KVM_CAP_SET_TSS_ADDR: 4,
  KVM_CAP_EXT_CPUID: 7,
  KVM_CAP_NR_VCPUS: 9,
  KVM_CAP_NR_MEMSLOTS: 10,
  KVM_CAP_PIT: 11,
  KVM_CAP_MP_STATE: 14,
  KVM_CAP_IRQ_ROUTING: 25,
  KVM_CAP_SET_IDENTITY_MAP_ADDR: 37,
  KVM_CAP_IRQFD: 32,
  KVM_CAP_PIT2: 33,
  KVM_CAP_PIT_STATE2: 35,
  KVM_CAP_IOEVENTFD: 36,
  KVM_CAP_ADJUST_CLOCK: 39,
  KVM_CAP_VCPU_EVENTS: 41,
  KVM_CAP_DEBUGREGS: 50,
  KVM_CAP_XSAVE: 55,
  KVM_CAP_XCRS: 56,
  KVM_CAP_TSC_CONTROL: 60,
  KVM_CAP_GET_TSC_KHZ: 61,
  KVM_CAP_MAX_VCPUS: 66,
  KVM_CAP_KVMCLOCK_CTRL: 76,
  KVM_CAP_IMMEDIATE_EXIT: 136,
  KVM_CAP_SPLIT_IRQCHIP: 121,
  KVM_CAP_NESTED_STATE: 157,
} as const;

export type KvmCapName = keyof typeof KVM_CAPS;

/** kvm_run.exit_reason values. */
export const KVM_EXIT = {
  KVM_EXIT_UNKNOWN: 0,
  KVM_EXIT_EXCEPTION: 1,
  KVM_EXIT_IO: 2,
  KVM_EXIT_HYPERCALL: 3,
  KVM_EXIT_DEBUG: 4,
  KVM_EXIT_HLT: 5,
  KVM_EXIT_MMIO: 6,
  KVM_EXIT_IRQ_WINDOW_OPEN: 7,
  KVM_EXIT_SHUTDOWN: 8,
  KVM_EXIT_FAIL_ENTRY: 9,
  KVM_EXIT_INTR: 10,
  KVM_EXIT_INTERNAL_ERROR: 17,
  KVM_EXIT_SYSTEM_EVENT: 24,
} as const;

/** Other named constants of <linux/kvm.h> that tsvmm passes to the kernel. */
export const KVM_CONSTANTS = {
  KVM_API_VERSION: 12,
  KVM_EXIT_IO_IN: 0,
  KVM_EXIT_IO_OUT: 1,
  KVM_MEM_LOG_DIRTY_PAGES: 1,
  KVM_MEM_READONLY: 2,
  KVM_IRQFD_FLAG_DEASSIGN: 1,
  KVM_IOEVENTFD_FLAG_DATAMATCH: 1,
  KVM_IOEVENTFD_FLAG_PIO: 2,
  KVM_IOEVENTFD_FLAG_DEASSIGN: 4,
  KVM_IRQCHIP_PIC_MASTER: 0,
  KVM_IRQCHIP_PIC_SLAVE: 1,
  KVM_IRQCHIP_IOAPIC: 2,
  KVM_PIT_SPEAKER_DUMMY: 1,
  KVM_MP_STATE_RUNNABLE: 0,
  KVM_MP_STATE_UNINITIALIZED: 1,
  KVM_MP_STATE_INIT_RECEIVED: 2,
  KVM_MP_STATE_HALTED: 3,
  KVM_MP_STATE_SIPI_RECEIVED: 4,
  KVM_SYSTEM_EVENT_SHUTDOWN: 1,
  KVM_SYSTEM_EVENT_RESET: 2,
  KVM_SYSTEM_EVENT_CRASH: 3,
  KVM_CPUID_FLAG_SIGNIFCANT_INDEX: 1,
  KVM_CLOCK_TSC_STABLE: 2,
} as const;

/** How many CPUID entries we ask KVM_GET_SUPPORTED_CPUID for (it fails with E2BIG below its count). */
export const MAX_CPUID_ENTRIES = 256;
