import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Kvm } from '../../src/kvm/system.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { createRamRegions, unmapRegions } from '../../src/memory/regions.js';
import { pthreadKill, SIGUSR2 } from '../../src/sys/libc.js';
import { buildForWorkers } from './helpers/build-for-workers.js';

const here = dirname(fileURLToPath(import.meta.url));
type Msg = { type: 'ready'; thread: bigint } | { type: 'intr'; at: number } | { type: 'unexpected'; exit: string } | { type: 'done' };

function now(): number {
  return performance.timeOrigin + performance.now();
}

describe('vCPU in a worker thread', () => {
  it('is kicked out of a guest spinning in `jmp $` by immediate_exit + pthread_kill', async () => {
    // libuv installs a process-wide, async-signal-safe handler: the signal then interrupts KVM_RUN
    // in the worker (EINTR) instead of killing the process.
    const onSignal = (): void => {};
    process.on('SIGUSR2', onSignal);
    const dist = pathToFileURL(buildForWorkers()).href;
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const regions = createRamRegions(0x10000);
    const vcpu = (() => {
      vm.setUserMemoryRegion(0, 0, regions[0]!.size, regions[0]!.hostAddress);
      new GuestMemory(regions).write(0x1000, Uint8Array.from([0xeb, 0xfe])); // jmp $
      const v = vm.createVcpu(0);
      const sregs = v.getSregs();
      sregs.cs.base = 0n;
      sregs.cs.selector = 0;
      v.setSregs(sregs);
      v.setRegs({ ...v.getRegs(), rip: 0x1000n, rflags: 2n });
      return v;
    })();
    const control = new SharedArrayBuffer(8);
    const ctl = new Int32Array(control);
    const worker = new Worker(join(here, 'fixtures', 'vcpu-loop-worker.mjs'), { workerData: { dist, handle: vcpu.handle(), control } });
    const inbox: Msg[] = [];
    let wake: (() => void) | null = null;
    worker.on('message', (m: Msg) => { inbox.push(m); wake?.(); });
    const failed = new Promise<never>((_, reject) => worker.once('error', reject));
    const next = async (): Promise<Msg> => {
      while (inbox.length === 0) await Promise.race([new Promise<void>((r) => { wake = r; }), failed]);
      return inbox.shift()!;
    };

    try {
      const ready = await next();
      if (ready.type !== 'ready') throw new Error(`worker said ${JSON.stringify(ready)}`);
      const exitLatency: number[] = [];
      const roundTrip: number[] = [];
      const rounds = 20;
      for (let i = 0; i < rounds; i++) {
        await new Promise((r) => setTimeout(r, 10)); // let the guest spin inside KVM_RUN
        const t0 = now();
        vcpu.setImmediateExit(true);
        pthreadKill(ready.thread, SIGUSR2);
        const m = await next();
        const t2 = now();
        expect(m.type).toBe('intr');
        if (m.type === 'intr') exitLatency.push(m.at - t0);
        roundTrip.push(t2 - t0);
        if (i < rounds - 1) {
          vcpu.setImmediateExit(false); // before the resume: the worker re-enters the guest
          Atomics.add(ctl, 0, 1);
          Atomics.notify(ctl, 0);
        }
      }
      Atomics.store(ctl, 1, 1);
      Atomics.add(ctl, 0, 1);
      Atomics.notify(ctl, 0);
      expect((await next()).type).toBe('done');
      expect(vcpu.getRegs().rip).toBe(0x1000n); // still at `jmp $`: the guest really was spinning there

      const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      console.log(
        `vCPU kick latency over ${rounds} kicks: signal→KVM_RUN returns in worker median ${median(exitLatency).toFixed(3)} ms, ` +
        `max ${Math.max(...exitLatency).toFixed(3)} ms; signal→message on main thread median ${median(roundTrip).toFixed(3)} ms, ` +
        `max ${Math.max(...roundTrip).toFixed(3)} ms`,
      );
    } finally {
      await worker.terminate();
      process.off('SIGUSR2', onSignal);
      vcpu.close();
      vm.close();
      kvm.close();
      unmapRegions(regions);
    }
  });
});
