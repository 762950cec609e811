/*
 * Prints, as JSON, the numbers src/kvm hard-codes, as the kernel headers define them: ioctl
 * numbers, capability and exit numbers, constants, struct sizes and member offsets.
 * test/kvm/layout.test.ts compiles this with the machine's gcc and compares key for key.
 * Build: gcc -O0 -o native-shims/out/kvm_layout native-shims/kvm_layout.c
 */
#include <linux/kvm.h>
#include <stddef.h>
#include <stdio.h>

static int first, objects;
static void open_obj(const char *name) { printf("%s\"%s\":{", objects++ ? "," : "", name); first = 1; }
static void close_obj(void) { printf("}"); }
static void num(const char *key, unsigned long long v) { printf("%s\"%s\":%llu", first ? "" : ",", key, v); first = 0; }

#define N(x) num(#x, (unsigned long long)(x))
#define SZ(s) num(#s, sizeof(struct s))
#define OFF(s, m) num(#s "." #m, offsetof(struct s, m))

int main(void) {
	printf("{");
	open_obj("ioctls");
	N(KVM_GET_API_VERSION); N(KVM_CREATE_VM); N(KVM_GET_MSR_INDEX_LIST); N(KVM_CHECK_EXTENSION);
	N(KVM_GET_VCPU_MMAP_SIZE); N(KVM_GET_SUPPORTED_CPUID); N(KVM_GET_MSR_FEATURE_INDEX_LIST);
	N(KVM_CREATE_VCPU); N(KVM_GET_DIRTY_LOG); N(KVM_SET_USER_MEMORY_REGION); N(KVM_SET_TSS_ADDR);
	N(KVM_SET_IDENTITY_MAP_ADDR); N(KVM_CREATE_IRQCHIP); N(KVM_IRQ_LINE); N(KVM_GET_IRQCHIP);
	N(KVM_SET_IRQCHIP); N(KVM_IRQ_LINE_STATUS); N(KVM_IRQFD); N(KVM_CREATE_PIT2); N(KVM_IOEVENTFD);
	N(KVM_SET_CLOCK); N(KVM_GET_CLOCK); N(KVM_GET_PIT2); N(KVM_SET_PIT2); N(KVM_ENABLE_CAP);
	N(KVM_RUN); N(KVM_GET_REGS); N(KVM_SET_REGS); N(KVM_GET_SREGS); N(KVM_SET_SREGS);
	N(KVM_GET_MSRS); N(KVM_SET_MSRS); N(KVM_GET_FPU); N(KVM_SET_FPU); N(KVM_GET_LAPIC);
	N(KVM_SET_LAPIC); N(KVM_SET_CPUID2); N(KVM_GET_CPUID2); N(KVM_GET_MP_STATE); N(KVM_SET_MP_STATE);
	N(KVM_GET_VCPU_EVENTS); N(KVM_SET_VCPU_EVENTS); N(KVM_GET_DEBUGREGS); N(KVM_SET_DEBUGREGS);
	N(KVM_SET_TSC_KHZ); N(KVM_GET_TSC_KHZ); N(KVM_GET_XSAVE); N(KVM_SET_XSAVE); N(KVM_GET_XCRS);
	N(KVM_SET_XCRS); N(KVM_KVMCLOCK_CTRL);
	close_obj();

	open_obj("caps");
	N(KVM_CAP_IRQCHIP); N(KVM_CAP_HLT); N(KVM_CAP_USER_MEMORY); N(KVM_CAP_SET_TSS_ADDR);
	N(KVM_CAP_EXT_CPUID); N(KVM_CAP_NR_VCPUS); N(KVM_CAP_NR_MEMSLOTS); N(KVM_CAP_PIT);
	N(KVM_CAP_MP_STATE); N(KVM_CAP_IRQ_ROUTING); N(KVM_CAP_SET_IDENTITY_MAP_ADDR); N(KVM_CAP_IRQFD);
	N(KVM_CAP_PIT2); N(KVM_CAP_PIT_STATE2); N(KVM_CAP_IOEVENTFD); N(KVM_CAP_ADJUST_CLOCK);
	N(KVM_CAP_VCPU_EVENTS); N(KVM_CAP_DEBUGREGS); N(KVM_CAP_XSAVE); N(KVM_CAP_XCRS);
	N(KVM_CAP_TSC_CONTROL); N(KVM_CAP_GET_TSC_KHZ); N(KVM_CAP_MAX_VCPUS); N(KVM_CAP_KVMCLOCK_CTRL);
	N(KVM_CAP_IMMEDIATE_EXIT); N(KVM_CAP_SPLIT_IRQCHIP); N(KVM_CAP_NESTED_STATE);
	close_obj();

	open_obj("exits");
	N(KVM_EXIT_UNKNOWN); N(KVM_EXIT_EXCEPTION); N(KVM_EXIT_IO); N(KVM_EXIT_HYPERCALL);
	N(KVM_EXIT_DEBUG); N(KVM_EXIT_HLT); N(KVM_EXIT_MMIO); N(KVM_EXIT_IRQ_WINDOW_OPEN);
	N(KVM_EXIT_SHUTDOWN); N(KVM_EXIT_FAIL_ENTRY); N(KVM_EXIT_INTR); N(KVM_EXIT_INTERNAL_ERROR);
	N(KVM_EXIT_SYSTEM_EVENT);
	close_obj();

	open_obj("constants");
	N(KVM_API_VERSION); N(KVM_EXIT_IO_IN); N(KVM_EXIT_IO_OUT); N(KVM_MEM_LOG_DIRTY_PAGES);
	N(KVM_MEM_READONLY); N(KVM_IRQFD_FLAG_DEASSIGN);
	num("KVM_IOEVENTFD_FLAG_DATAMATCH", KVM_IOEVENTFD_FLAG_DATAMATCH);
	num("KVM_IOEVENTFD_FLAG_PIO", KVM_IOEVENTFD_FLAG_PIO);
	num("KVM_IOEVENTFD_FLAG_DEASSIGN", KVM_IOEVENTFD_FLAG_DEASSIGN);
	N(KVM_IRQCHIP_PIC_MASTER); N(KVM_IRQCHIP_PIC_SLAVE); N(KVM_IRQCHIP_IOAPIC); N(KVM_PIT_SPEAKER_DUMMY);
	N(KVM_MP_STATE_RUNNABLE); N(KVM_MP_STATE_UNINITIALIZED); N(KVM_MP_STATE_INIT_RECEIVED);
	N(KVM_MP_STATE_HALTED); N(KVM_MP_STATE_SIPI_RECEIVED); N(KVM_SYSTEM_EVENT_SHUTDOWN);
	N(KVM_SYSTEM_EVENT_RESET); N(KVM_SYSTEM_EVENT_CRASH); N(KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
	N(KVM_CLOCK_TSC_STABLE);
	close_obj();

	open_obj("sizes");
	SZ(kvm_regs); SZ(kvm_segment); SZ(kvm_dtable); SZ(kvm_sregs); SZ(kvm_fpu); SZ(kvm_xsave);
	SZ(kvm_xcr); SZ(kvm_xcrs); SZ(kvm_msr_entry); SZ(kvm_msrs); SZ(kvm_msr_list);
	SZ(kvm_cpuid_entry2); SZ(kvm_cpuid2); SZ(kvm_lapic_state); SZ(kvm_vcpu_events); SZ(kvm_mp_state);
	SZ(kvm_debugregs); SZ(kvm_userspace_memory_region); SZ(kvm_irqchip); SZ(kvm_pit_config);
	SZ(kvm_pit_state2); SZ(kvm_irqfd); SZ(kvm_ioeventfd); SZ(kvm_dirty_log); SZ(kvm_clock_data);
	SZ(kvm_irq_level); SZ(kvm_enable_cap);
	close_obj();

	open_obj("offsets");
	OFF(kvm_regs, rax); OFF(kvm_regs, rbx); OFF(kvm_regs, rcx); OFF(kvm_regs, rdx); OFF(kvm_regs, rsi);
	OFF(kvm_regs, rdi); OFF(kvm_regs, rsp); OFF(kvm_regs, rbp); OFF(kvm_regs, r8); OFF(kvm_regs, r9);
	OFF(kvm_regs, r10); OFF(kvm_regs, r11); OFF(kvm_regs, r12); OFF(kvm_regs, r13); OFF(kvm_regs, r14);
	OFF(kvm_regs, r15); OFF(kvm_regs, rip); OFF(kvm_regs, rflags);
	OFF(kvm_segment, base); OFF(kvm_segment, limit); OFF(kvm_segment, selector); OFF(kvm_segment, type);
	OFF(kvm_segment, present); OFF(kvm_segment, dpl); OFF(kvm_segment, db); OFF(kvm_segment, s);
	OFF(kvm_segment, l); OFF(kvm_segment, g); OFF(kvm_segment, avl); OFF(kvm_segment, unusable);
	OFF(kvm_dtable, base); OFF(kvm_dtable, limit);
	OFF(kvm_sregs, cs); OFF(kvm_sregs, ds); OFF(kvm_sregs, es); OFF(kvm_sregs, fs); OFF(kvm_sregs, gs);
	OFF(kvm_sregs, ss); OFF(kvm_sregs, tr); OFF(kvm_sregs, ldt); OFF(kvm_sregs, gdt); OFF(kvm_sregs, idt);
	OFF(kvm_sregs, cr0); OFF(kvm_sregs, cr2); OFF(kvm_sregs, cr3); OFF(kvm_sregs, cr4); OFF(kvm_sregs, cr8);
	OFF(kvm_sregs, efer); OFF(kvm_sregs, apic_base); OFF(kvm_sregs, interrupt_bitmap);
	OFF(kvm_fpu, fpr); OFF(kvm_fpu, fcw); OFF(kvm_fpu, fsw); OFF(kvm_fpu, ftwx); OFF(kvm_fpu, last_opcode);
	OFF(kvm_fpu, last_ip); OFF(kvm_fpu, last_dp); OFF(kvm_fpu, xmm); OFF(kvm_fpu, mxcsr);
	OFF(kvm_xcr, xcr); OFF(kvm_xcr, value); OFF(kvm_xcrs, nr_xcrs); OFF(kvm_xcrs, flags); OFF(kvm_xcrs, xcrs);
	OFF(kvm_msr_entry, index); OFF(kvm_msr_entry, data); OFF(kvm_msrs, nmsrs); OFF(kvm_msrs, entries);
	OFF(kvm_msr_list, nmsrs); OFF(kvm_msr_list, indices);
	OFF(kvm_cpuid_entry2, function); OFF(kvm_cpuid_entry2, index); OFF(kvm_cpuid_entry2, flags);
	OFF(kvm_cpuid_entry2, eax); OFF(kvm_cpuid_entry2, ebx); OFF(kvm_cpuid_entry2, ecx); OFF(kvm_cpuid_entry2, edx);
	OFF(kvm_cpuid2, nent); OFF(kvm_cpuid2, entries);
	OFF(kvm_mp_state, mp_state);
	OFF(kvm_debugregs, db); OFF(kvm_debugregs, dr6); OFF(kvm_debugregs, dr7); OFF(kvm_debugregs, flags);
	OFF(kvm_userspace_memory_region, slot); OFF(kvm_userspace_memory_region, flags);
	OFF(kvm_userspace_memory_region, guest_phys_addr); OFF(kvm_userspace_memory_region, memory_size);
	OFF(kvm_userspace_memory_region, userspace_addr);
	OFF(kvm_irqchip, chip_id); OFF(kvm_irqchip, chip);
	OFF(kvm_pit_config, flags); OFF(kvm_pit_state2, channels); OFF(kvm_pit_state2, flags);
	OFF(kvm_irqfd, fd); OFF(kvm_irqfd, gsi); OFF(kvm_irqfd, flags); OFF(kvm_irqfd, resamplefd);
	OFF(kvm_ioeventfd, datamatch); OFF(kvm_ioeventfd, addr); OFF(kvm_ioeventfd, len); OFF(kvm_ioeventfd, fd);
	OFF(kvm_ioeventfd, flags);
	OFF(kvm_dirty_log, slot); OFF(kvm_dirty_log, dirty_bitmap);
	OFF(kvm_clock_data, clock); OFF(kvm_clock_data, flags); OFF(kvm_clock_data, realtime); OFF(kvm_clock_data, host_tsc);
	OFF(kvm_irq_level, irq); OFF(kvm_irq_level, level);
	OFF(kvm_enable_cap, cap); OFF(kvm_enable_cap, flags); OFF(kvm_enable_cap, args);
	OFF(kvm_run, request_interrupt_window); OFF(kvm_run, immediate_exit); OFF(kvm_run, exit_reason);
	OFF(kvm_run, ready_for_interrupt_injection); OFF(kvm_run, if_flag); OFF(kvm_run, flags);
	OFF(kvm_run, cr8); OFF(kvm_run, apic_base);
	OFF(kvm_run, io.direction); OFF(kvm_run, io.size); OFF(kvm_run, io.port); OFF(kvm_run, io.count);
	OFF(kvm_run, io.data_offset);
	OFF(kvm_run, mmio.phys_addr); OFF(kvm_run, mmio.data); OFF(kvm_run, mmio.len); OFF(kvm_run, mmio.is_write);
	OFF(kvm_run, fail_entry.hardware_entry_failure_reason); OFF(kvm_run, fail_entry.cpu);
	OFF(kvm_run, internal.suberror); OFF(kvm_run, internal.ndata); OFF(kvm_run, internal.data);
	OFF(kvm_run, system_event.type); OFF(kvm_run, system_event.ndata); OFF(kvm_run, system_event.data);
	OFF(kvm_run, hw.hardware_exit_reason);
	close_obj();

	open_obj("lengths");
	num("kvm_run.internal.data", sizeof(((struct kvm_run *)0)->internal.data) / 8);
	num("kvm_run.system_event.data", sizeof(((struct kvm_run *)0)->system_event.data) / 8);
	num("kvm_xcrs.xcrs", sizeof(((struct kvm_xcrs *)0)->xcrs) / sizeof(struct kvm_xcr));
	num("kvm_sregs.interrupt_bitmap", sizeof(((struct kvm_sregs *)0)->interrupt_bitmap) / 8);
	close_obj();
	printf("}\n");
	return 0;
}
