/**
 * A vCPU stopped (for a pause, hence a snapshot) while the VMM answers one of its port or MMIO
 * reads must have that read completed in its saved state: KVM writes the data into the guest's
 * registers and moves RIP past the instruction only when KVM_RUN is entered again. Without that
 * a restored guest executed the instruction twice; a real Linux guest's second read of its UART
 * consumed an interrupt or a byte that the first read had already taken.
 *
 * This drives the real vCPU thread (dist/vmm/vcpu-thread.js, the code tsvmm runs) on a bare KVM
 * vCPU in real mode, and stops it from inside the access handler: the worst-case timing, made
 * deterministic.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/tsvmm-process.js';

type KvmModule = typeof import('../../src/kvm/system.js');
type RegionsModule = typeof import('../../src/memory/regions.js');
type ThreadModule = typeof import('../../src/vmm/vcpu-thread.js');
type Regs = import('../../src/kvm/types.js').KvmRegs;
type Thread = import('../../src/vmm/vcpu-thread.js').VcpuThread;

const dist = (path: string): string => pathToFileURL(join(repoRoot, 'dist', path)).href;
const PIO_IN = 1;
const MMIO_READ = 3;

/** Every port is claimed: the handler sees every access. */
const ALL_PORTS = [{ base: 0, size: 0x10000 }];

/**
 * Runs `code` at 0x1000 in real mode; the handler answers every read of kind `expectKind` with 0x5a
 * and stops the vCPU. Accesses to ports outside `claimedPorts` never reach the handler.
 */
async function stopDuringRead(code: number[], expectKind: number, claimedPorts = ALL_PORTS): Promise<{ regs: Regs; reads: number; unclaimed: number }> {
  const { Kvm } = (await import(dist('kvm/system.js'))) as KvmModule;
  const { createRamRegions, unmapRegions } = (await import(dist('memory/regions.js'))) as RegionsModule;
  const { VcpuThread } = (await import(dist('vmm/vcpu-thread.js'))) as ThreadModule;
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  // 16 KiB of RAM: an access at 0x8000 is MMIO (no memory slot there).
  const regions = createRamRegions(0x4000);
  vm.setUserMemoryRegion(0, 0, regions[0]!.size, regions[0]!.hostAddress);
  regions[0]!.bytes.set(code, 0x1000);
  const vcpu = vm.createVcpu(0);
  const sregs = vcpu.getSregs();
  sregs.cs.base = 0n;
  sregs.cs.selector = 0;
  vcpu.setSregs(sregs);
  vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x1000n, rax: 0n, rflags: 2n });
  let reads = 0;
  let stopping: Promise<unknown> | undefined;
  let thread: Thread | undefined;
  try {
    thread = await VcpuThread.start(0, vcpu, (kind, _address, size, _count, data) => {
      if (kind !== expectKind) return;
      reads++;
      data.fill(0x5a, 0, size);
      // The pause arrives while this read is being answered.
      stopping ??= thread!.stop();
    }, { serial: undefined, claimedPorts });
    const reason = await thread.run();
    await stopping;
    expect(reason.kind).toBe('kicked');
    return { regs: await thread.call<Regs>('getRegs'), reads, unclaimed: thread.unclaimedPorts() };
  } finally {
    await thread?.close();
    vcpu.close();
    unmapRegions(regions);
    vm.close();
    kvm.close();
  }
}

describe('a vCPU stopped while its port/MMIO read is answered', () => {
  it('`in al, 0x80`: the saved registers hold the value read and RIP is past the instruction', async () => {
    const { regs, reads } = await stopDuringRead([0xe4, 0x80, 0xeb, 0xfe], PIO_IN); // in al,0x80; jmp $
    expect(reads).toBe(1);
    expect(regs.rax & 0xffn).toBe(0x5an);
    expect(regs.rip).toBe(0x1002n);
  });

  it('`mov al, [0x8000]` (MMIO): the same', async () => {
    const { regs, reads } = await stopDuringRead([0xa0, 0x00, 0x80, 0xeb, 0xfe], MMIO_READ); // mov al,[0x8000]; jmp $
    expect(reads).toBe(1);
    expect(regs.rax & 0xffn).toBe(0x5an);
    expect(regs.rip).toBe(0x1003n);
  });
});

describe('a port no device claims is answered by the vCPU thread itself', () => {
  it('reads float high and writes vanish without the main thread; a claimed port still reaches its handler', async () => {
    // in al,0x80; out 0x80,al; mov bl,al; in al,0x60; jmp $ (only 0x60 is claimed)
    const code = [0xe4, 0x80, 0xe6, 0x80, 0x88, 0xc3, 0xe4, 0x60, 0xeb, 0xfe];
    const { regs, reads, unclaimed } = await stopDuringRead(code, PIO_IN, [{ base: 0x60, size: 1 }]);
    expect(reads).toBe(1);
    expect(unclaimed).toBe(2);
    expect(regs.rbx & 0xffn).toBe(0xffn);
    expect(regs.rax & 0xffn).toBe(0x5an);
    expect(regs.rip).toBe(0x1008n);
  });
});
