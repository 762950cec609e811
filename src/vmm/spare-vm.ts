/**
 * The spare-VM pool of an idle VMM: one empty KVM VM made ahead of time, taken by the next
 * VM the builder (builder.ts) makes.
 */
import { Kvm } from '../kvm/system.js';
import type { VmFd } from '../kvm/vm.js';

const KVM_TSS_ADDRESS = 0xfffb_d000;
const KVM_IDENTITY_MAP_ADDRESS = 0xfffb_c000;

/** A KVM VM with the in-kernel irqchip and PIT every tsvmm VM has, and nothing else yet. */
export function newKvmVm(kvm: Kvm): VmFd {
  const vmFd = kvm.createVm();
  try {
    vmFd.setTssAddr(KVM_TSS_ADDRESS);
    vmFd.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDRESS);
    vmFd.createIrqchip();
    vmFd.createPit2();
  } catch (e) {
    vmFd.close();
    throw e;
  }
  return vmFd;
}

/**
 * An empty VM (irqchip and PIT, no memory, no vCPUs) made ahead of time by an idle VMM: creating
 * one costs from under a millisecond to tens of them on a busy PVM host, time a warm restore
 * should not pay. Its Kvm handle stays open with it.
 */
let spareVm: { kvm: Kvm; vmFd: VmFd } | undefined;

export function prepareSpareVm(): void {
  if (spareVm !== undefined || !Kvm.available()) return;
  const kvm = Kvm.open();
  try {
    spareVm = { kvm, vmFd: newKvmVm(kvm) };
  } catch {
    kvm.close(); // the real build reports the problem with its own context
  }
}

/** Closes the spare VM if nobody took it. */
export function releaseSpareVm(): void {
  takeSpareVm()?.close();
}

/** The spare VM, for the VM builder to use instead of making one; undefined when there is none. */
export function takeSpareVm(): VmFd | undefined {
  const s = spareVm;
  spareVm = undefined;
  if (s === undefined) return undefined;
  // The VM fd keeps its own reference to KVM: the spare's /dev/kvm handle is no longer needed.
  s.kvm.close();
  return s.vmFd;
}
