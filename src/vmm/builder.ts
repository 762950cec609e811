/**
 * The VM builder (Firecracker's builder.rs in spirit): makes a Vm from a config (boot) or from a
 * verified snapshot (restore). Every input is read and validated before KVM objects are created,
 * and whatever was made is undone if a later step fails. The running VM is vm.ts.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { fileErrorReason } from '../util/fs.js';
import { Kvm } from '../kvm/system.js';
import { OFFSETS } from '../kvm/structs.js';
import type { VcpuFd } from '../kvm/vcpu.js';
import type { VmFd } from '../kvm/vm.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { createRamRegions, copyFileRegion, mapFileRegionPrivate, unmapRegions, type MappedRegion } from '../memory/regions.js';
import { layoutGuest, setLapicLint, type BootFpu } from './boot/index.js';
import type { VmConfig } from './config.js';
import { InputFileError } from './errors.js';
import { makeAccessHandler } from './io-dispatch.js';
import { Platform } from './platform.js';
import { newKvmVm, takeSpareVm } from './spare-vm.js';
import { probeSaveableMsrs, restoreVcpu } from './vcpu-state.js';
import { prewarmVcpuWorkers, VcpuThread } from './vcpu-thread.js';
import type { MemoryRestoreMode } from './requests.js';
import { IRQCHIPS, Vm, type Parts, type VmHooks } from './vm.js';
import type { VmSavedState } from './vm-state.js';

/** Restore inputs: the verified snapshot's memory files and component states. */
export interface RestoreSource {
  config: VmConfig;
  regions: Array<{ index: number; guestBase: number; size: number; path: string; dataExtents: Array<[number, number]> }>;
  /** `OnDemand`: map the memory files copy-on-write; `Copy`: read them into fresh RAM now. */
  memoryRestoreMode: MemoryRestoreMode;
  /** OnDemand only: read the data extents of the memory files up front instead of on first touch. */
  prefault: boolean;
  state: VmSavedState;
}

function readInput(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new InputFileError(`cannot read ${what} ${path}: ${fileErrorReason(e)}`);
  }
}

/** Applies the boot FPU control words to a kvm_fpu image (the rest stays as KVM reset it). */
function withBootFpu(fpu: Uint8Array, boot: BootFpu): Uint8Array {
  const dv = new DataView(fpu.buffer, fpu.byteOffset, fpu.byteLength);
  dv.setUint16(OFFSETS['kvm_fpu.fcw']!, boot.fcw, true);
  dv.setUint16(OFFSETS['kvm_fpu.fsw']!, boot.fsw, true);
  dv.setUint8(OFFSETS['kvm_fpu.ftwx']!, boot.ftwx);
  dv.setUint32(OFFSETS['kvm_fpu.mxcsr']!, boot.mxcsr, true);
  return fpu;
}

/** Undo stack for a half-built VM. */
class Cleanups {
  private steps: Array<() => unknown> = [];
  push(step: () => unknown): void { this.steps.push(step); }
  async run(): Promise<void> {
    for (const step of this.steps.reverse()) {
      try { await step(); } catch { /* already failing: the first error is the one to report */ }
    }
    this.steps = [];
  }
}

/**
 * Static methods rather than module functions so that bench/boot-bench.mjs can wrap the steps
 * (createKvmVm, registerMemory) to time them.
 */
export class VmBuilder {
  /** Creates the KVM VM with its in-kernel irqchip and PIT (or takes the one made in advance). */
  private static createKvmVm(kvm: Kvm, config: VmConfig, cleanups: Cleanups): VmFd {
    const maxVcpus = kvm.checkExtension('KVM_CAP_MAX_VCPUS') || kvm.checkExtension('KVM_CAP_NR_VCPUS');
    if (config.cpus.boot_vcpus > maxVcpus) {
      throw new ConfigError(`--cpus boot=${config.cpus.boot_vcpus} is more than this host's KVM allows (${maxVcpus})`);
    }
    const vmFd = takeSpareVm() ?? newKvmVm(kvm);
    cleanups.push(() => vmFd.close());
    return vmFd;
  }

  private static registerMemory(vmFd: VmFd, regions: MappedRegion[]): GuestMemory {
    const memory = new GuestMemory(regions);
    for (const r of regions) vmFd.setUserMemoryRegion(r.index, r.guestBase, r.size, r.hostAddress);
    return memory;
  }

  private static async startThreads(config: VmConfig, parts: Parts, hooks: VmHooks, msrIndices: number[], cleanups: Cleanups): Promise<Vm> {
    const access = makeAccessHandler(parts.platform.pio, parts.platform.mmio, parts.platform.unclaimed);
    // Every worker is told to attach now (synchronously, before the first await), so they attach
    // side by side, and while the caller goes on loading vCPU state on this thread.
    const fastPaths = { serial: parts.platform.serialShare(), claimedPorts: parts.platform.pio.claimed() };
    const settled = await Promise.allSettled(parts.vcpus.map((v, i) => VcpuThread.start(i, v, access, fastPaths)));
    const threads: VcpuThread[] = [];
    for (const r of settled) {
      if (r.status === 'fulfilled') {
        threads.push(r.value);
        cleanups.push(() => r.value.close());
      }
    }
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    return new Vm(config, parts, threads, msrIndices, hooks);
  }

  /** Builds a VM that boots `config.payload.kernel`; its vCPUs are idle until `start()`. */
  static async boot(config: VmConfig, hooks: VmHooks): Promise<Vm> {
    // Worker start-up overlaps with reading the kernel and setting up KVM.
    prewarmVcpuWorkers(config.cpus.boot_vcpus);
    const kernel = readInput(config.payload.kernel, 'kernel');
    const initramfs = config.payload.initramfs === undefined ? undefined : readInput(config.payload.initramfs, 'initramfs');
    const cleanups = new Cleanups();
    const kvm = Kvm.open();
    cleanups.push(() => kvm.close());
    try {
      const vmFd = VmBuilder.createKvmVm(kvm, config, cleanups);
      const regions = createRamRegions(config.memory.size);
      cleanups.push(() => unmapRegions(regions));
      const memory = VmBuilder.registerMemory(vmFd, regions);
      const platform = await Platform.create(config, vmFd, memory, hooks);
      cleanups.push(() => platform.close());

      const plan = layoutGuest({
        kernel,
        initramfs,
        cmdline: config.payload.cmdline ?? '',
        memory,
        vcpus: config.cpus.boot_vcpus,
        virtioDevices: platform.virtioSlots(),
        supportedCpuid: kvm.supportedCpuid(),
      });

      const vcpus: VcpuFd[] = [];
      for (let i = 0; i < config.cpus.boot_vcpus; i++) {
        const v = vmFd.createVcpu(i);
        vcpus.push(v);
        cleanups.push(() => v.close());
        v.setCpuid2(plan.cpuidPerVcpu[i]!);
        // 1 is the reset value; a host without XSAVE refuses KVM_SET_XCRS altogether.
        if (plan.xcr0 !== 1n) v.setXcrs({ flags: 0, xcrs: [{ xcr: 0, value: plan.xcr0 }] });
        v.setMsrs(plan.msrs);
        const lapic = v.getLapic();
        setLapicLint(lapic);
        v.setLapic(lapic);
        v.setFpu(withBootFpu(v.getFpu(), plan.fpu));
        if (i === 0) {
          v.setSregs(plan.bsp.sregs);
          v.setRegs(plan.bsp.regs);
        }
      }
      const msrIndices = probeSaveableMsrs(vcpus[0]!, kvm.msrIndexList());
      return await VmBuilder.startThreads(config, { kvm, vmFd, regions, memory, platform, vcpus }, hooks, msrIndices, cleanups);
    } catch (e) {
      await cleanups.run();
      throw e;
    }
  }

  /**
   * Rebuilds a VM from a verified snapshot. Memory files are mapped MAP_PRIVATE (copy-on-write,
   * so restore time does not grow with RAM and the snapshot stays untouched; with `prefault` their
   * data is read in now), or with memory restore mode Copy read into fresh RAM. The VM comes back
   * Paused.
   */
  static async restore(src: RestoreSource, hooks: VmHooks): Promise<Vm> {
    const { config, state } = src;
    if (state.vcpus.length !== config.cpus.boot_vcpus) {
      throw new ConfigError(`snapshot holds ${state.vcpus.length} vCPU states but its config has boot_vcpus=${config.cpus.boot_vcpus}`);
    }
    prewarmVcpuWorkers(config.cpus.boot_vcpus);
    const cleanups = new Cleanups();
    const kvm = Kvm.open();
    cleanups.push(() => kvm.close());
    try {
      const vmFd = VmBuilder.createKvmVm(kvm, config, cleanups);
      const regions: MappedRegion[] = [];
      cleanups.push(() => unmapRegions(regions));
      for (const r of src.regions) {
        regions.push(src.memoryRestoreMode === 'Copy'
          ? copyFileRegion(r.path, r.guestBase, r.size, r.dataExtents, r.index)
          : mapFileRegionPrivate(r.path, r.guestBase, r.size, { index: r.index, ...(src.prefault ? { prefaultExtents: r.dataExtents } : {}) }));
      }
      const memory = VmBuilder.registerMemory(vmFd, regions);
      const platform = await Platform.create(config, vmFd, memory, hooks, state.platform);
      cleanups.push(() => platform.close());

      const vcpus: VcpuFd[] = [];
      for (const s of state.vcpus) {
        const v = vmFd.createVcpu(s.id);
        vcpus.push(v);
        cleanups.push(() => v.close());
      }
      const msrIndices = state.vcpus[0]!.msrs.map((m) => m.index);
      // The vCPU threads attach while this thread loads the saved state into KVM (no thread
      // runs its vCPU before the VM is resumed).
      const starting = VmBuilder.startThreads(config, { kvm, vmFd, regions, memory, platform, vcpus }, hooks, msrIndices, cleanups);
      try {
        state.vcpus.forEach((s, i) => restoreVcpu(vcpus[i]!, s));
        // The irqchip after the LAPICs (their state feeds it), the PIT and the clock last.
        IRQCHIPS.forEach((chip, i) => vmFd.setIrqchip(chip, state.vm.irqchips[i]!));
        vmFd.setPit2(state.vm.pit);
        platform.announceRestore();
      } catch (e) {
        await starting.catch(() => {}); // its threads are in `cleanups` once it settles
        throw e;
      }
      const vm = await starting;
      await vm.enterRestoredPause(state.vm.clock);
      return vm;
    } catch (e) {
      await cleanups.run();
      throw e;
    }
  }
}
