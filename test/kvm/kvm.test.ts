import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvmError } from '../../src/kvm/errors.js';
import { KVM_CONSTANTS } from '../../src/kvm/ioctls.js';
import { Kvm } from '../../src/kvm/system.js';
import type { VcpuFd } from '../../src/kvm/vcpu.js';
import type { VmFd } from '../../src/kvm/vm.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { createRamRegions, unmapRegions, type MappedRegion } from '../../src/memory/regions.js';
import { EventFd } from '../../src/sys/eventfd.js';
import { buildForWorkers } from './helpers/build-for-workers.js';

const CODE_AT = 0x1000;

/** A VM with `ramBytes` of RAM at 0 and one vCPU in real mode with cs base 0 and ip = CODE_AT. */
interface RealModeVm { kvm: Kvm; vm: VmFd; vcpu: VcpuFd; regions: MappedRegion[]; mem: GuestMemory; close(): void }

function realModeVm(code: number[], options: { irqchip?: boolean; ramBytes?: number; memFlags?: number } = {}): RealModeVm {
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  vm.setTssAddr(0xfffb_d000);
  if (options.irqchip) { vm.createIrqchip(); vm.createPit2(); }
  const regions = createRamRegions(options.ramBytes ?? 0x10000);
  const r0 = regions[0]!;
  vm.setUserMemoryRegion(0, 0, r0.size, r0.hostAddress, options.memFlags ?? 0);
  const mem = new GuestMemory(regions);
  mem.write(CODE_AT, Uint8Array.from(code));
  const vcpu = vm.createVcpu(0);
  const sregs = vcpu.getSregs();
  sregs.cs.base = 0n;
  sregs.cs.selector = 0;
  vcpu.setSregs(sregs);
  const regs = vcpu.getRegs();
  regs.rip = BigInt(CODE_AT);
  regs.rflags = 2n;
  vcpu.setRegs(regs);
  return {
    kvm, vm, vcpu, regions, mem,
    close() { vcpu.close(); vm.close(); kvm.close(); unmapRegions(regions); },
  };
}

describe('Kvm errors without a usable device', () => {
  it('a missing device says the host has no KVM', () => {
    let err: unknown;
    try { Kvm.open('/nonexistent/kvm'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(KvmError);
    expect((err as KvmError).code).toBe('ENOKVM');
    expect((err as KvmError).message).toBe('/nonexistent/kvm does not exist: this host has no KVM (load kvm_intel/kvm_amd or run on a host with virtualization)');
  });

  it('an unprivileged user is told to join the kvm group (run as uid 65534 via setpriv)', (ctx) => {
    if (process.getuid?.() !== 0) ctx.skip(); // needs root to drop privileges
    const dist = buildForWorkers();
    const code = `const { Kvm } = await import(${JSON.stringify(`file://${dist}/kvm/system.js`)});
      try { Kvm.open(); console.log('opened'); } catch (e) { console.log(e.code + ' ' + e.message); }`;
    const out = execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(out.trim()).toBe('ENOKVM permission denied on /dev/kvm: add your user to the kvm group or run as root');
  });

  it('a device that is not KVM fails the API version check', () => {
    expect(() => Kvm.open('/dev/null')).toThrow(/KVM_GET_API_VERSION failed: ENOTTY/);
  });
});

describe('KVM (real /dev/kvm)', () => {
  it('system ioctls: API version, extensions, mmap size, CPUID, MSR list', () => {
    const kvm = Kvm.open();
    try {
      expect(kvm.checkExtension('KVM_CAP_IRQCHIP')).toBeGreaterThan(0);
      expect(kvm.checkExtension('KVM_CAP_IMMEDIATE_EXIT')).toBeGreaterThan(0);
      expect(kvm.vcpuMmapSize()).toBeGreaterThanOrEqual(4096);
      const cpuid = kvm.supportedCpuid();
      expect(cpuid.find((e) => e.function === 0)?.eax).toBeGreaterThan(0);
      const msrs = kvm.msrIndexList();
      expect(msrs.length).toBeGreaterThan(5);
      expect(msrs).toContain(0xc000_0081); // STAR (EFER travels in sregs, not in this list)
    } finally { kvm.close(); }
  });

  it('runs real-mode code: io out/in, mmio write/read, then hlt', () => {
    const code = [
      0xb0, 0x42, //             mov al, 0x42
      0xba, 0xf8, 0x03, //       mov dx, 0x3f8
      0xee, //                   out dx, al
      0xb8, 0x34, 0x12, //       mov ax, 0x1234
      0xe7, 0x80, //             out 0x80, ax
      0xe4, 0x81, //             in al, 0x81
      0xe6, 0x82, //             out 0x82, al
      0xb8, 0x00, 0x20, //       mov ax, 0x2000
      0x8e, 0xd8, //             mov ds, ax
      0xc6, 0x06, 0x10, 0x00, 0x99, // mov byte [0x10], 0x99  (gpa 0x20010: no RAM there)
      0xa0, 0x20, 0x00, //       mov al, [0x20]            (gpa 0x20020)
      0xe6, 0x83, //             out 0x83, al
      0xf4, //                   hlt
    ];
    const t = realModeVm(code);
    try {
      const exits: unknown[] = [];
      for (let i = 0; i < 10; i++) {
        const e = t.vcpu.run();
        if (e.kind === 'io') {
          exits.push({ kind: 'io', direction: e.direction, port: e.port, size: e.size, count: e.count, data: [...e.data] });
          if (e.direction === 'in' && e.port === 0x81) e.data[0] = 0x5a;
        } else if (e.kind === 'mmio') {
          exits.push({ kind: 'mmio', address: e.address, isWrite: e.isWrite, data: e.isWrite ? [...e.data] : e.data.length });
          if (!e.isWrite) e.data[0] = 0x77;
        } else {
          exits.push(e);
          if (e.kind !== 'intr') break;
        }
      }
      expect(exits).toEqual([
        { kind: 'io', direction: 'out', port: 0x3f8, size: 1, count: 1, data: [0x42] },
        { kind: 'io', direction: 'out', port: 0x80, size: 2, count: 1, data: [0x34, 0x12] },
        { kind: 'io', direction: 'in', port: 0x81, size: 1, count: 1, data: [0] },
        { kind: 'io', direction: 'out', port: 0x82, size: 1, count: 1, data: [0x5a] },
        { kind: 'mmio', address: 0x20010, isWrite: true, data: [0x99] },
        { kind: 'mmio', address: 0x20020, isWrite: false, data: 1 },
        { kind: 'io', direction: 'out', port: 0x83, size: 1, count: 1, data: [0x77] },
        { kind: 'hlt' },
      ]);
    } finally { t.close(); }
  });

  it('measures the cost of a port-I/O exit through run() (hot path)', () => {
    const t = realModeVm([0xe6, 0x80, 0xeb, 0xfc]); // out 0x80, al; jmp back to the out
    try {
      for (let i = 0; i < 200; i++) t.vcpu.run(); // warm-up (JIT, page faults)
      const n = 3000;
      const t0 = performance.now();
      let ports = 0;
      for (let i = 0; i < n; i++) {
        const e = t.vcpu.run();
        if (e.kind === 'io') ports += e.port;
      }
      const us = ((performance.now() - t0) * 1000) / n;
      expect(ports).toBe(0x80 * n);
      console.log(`KVM_RUN round trip for an 'out' exit on the main thread: ${us.toFixed(2)} µs per exit (${n} exits)`);
    } finally { t.close(); }
  });

  it('immediate_exit makes run() return intr without entering the guest', () => {
    const t = realModeVm([0xeb, 0xfe]); // jmp $
    try {
      t.vcpu.setImmediateExit(true);
      expect(t.vcpu.run()).toEqual({ kind: 'intr' });
      expect(t.vcpu.getRegs().rip).toBe(BigInt(CODE_AT));
      t.vcpu.setImmediateExit(false);
      expect(t.vcpu.immediateExit).toBe(false);
    } finally { t.close(); }
  });

  it('ioeventfd swallows a port write (no exit) and bumps the eventfd; irqfd assigns and deassigns', () => {
    const code = [0xb0, 0x07, 0xba, 0x00, 0x05, 0xee, 0xe6, 0x84, 0xf4]; // mov al,7; mov dx,0x500; out dx,al; out 0x84,al; hlt
    const t = realModeVm(code, { irqchip: true });
    const io = EventFd.create({ nonBlocking: true });
    const irq = EventFd.create({ nonBlocking: true });
    try {
      t.vm.ioeventfd(io, 0x500, 1, { pio: true, datamatch: 7n });
      const e = t.vcpu.run();
      expect(e.kind === 'io' && e.port).toBe(0x84); // the write to 0x500 did not exit
      expect(io.read()).toBe(1n);
      t.vm.ioeventfdDeassign(io, 0x500, 1, { pio: true, datamatch: 7n });
      t.vm.irqfd(irq, 5);
      irq.write(1n); // injects GSI 5 (masked in the fresh IOAPIC: harmless)
      t.vm.irqfdDeassign(irq, 5);
      t.vm.irqLine(4, 1);
      t.vm.irqLine(4, 0);
    } finally { io.close(); irq.close(); t.close(); }
  });

  it('dirty page logging reports the page the guest wrote', () => {
    // mov byte [0x5000], 1 ; out 0x85, al
    const t = realModeVm([0xc6, 0x06, 0x00, 0x50, 0x01, 0xe6, 0x85], { memFlags: KVM_CONSTANTS.KVM_MEM_LOG_DIRTY_PAGES });
    try {
      expect(t.vm.dirtyBitmapBytes(0)).toBe(8); // 16 pages -> 2 bytes, rounded up to a u64
      expect(() => t.vm.getDirtyLog(0, 4)).toThrow(/needs 8 bytes/);
      expect(() => t.vm.getDirtyLog(3)).toThrow(/slot 3 was not set up/);
      t.vm.getDirtyLog(0); // clear whatever the set-up wrote
      expect(t.vcpu.run().kind).toBe('io');
      const bitmap = t.vm.getDirtyLog(0, 8);
      expect(bitmap[0]! & (1 << 5)).not.toBe(0);
      expect(t.mem.readU8(0x5000)).toBe(1);
    } finally { t.close(); }
  });

  describe('state round-trips', () => {
    let t: RealModeVm;
    beforeAll(() => {
      t = realModeVm([0xe6, 0x80, 0xeb, 0xfe], { irqchip: true }); // out 0x80, al; jmp $
      const cpuid = t.kvm.supportedCpuid();
      t.vcpu.setCpuid2(cpuid);
      expect(t.vcpu.run().kind).toBe('io'); // some state only settles after a first entry
    });
    afterAll(() => t.close());

    it('regs and sregs', () => {
      const regs = t.vcpu.getRegs();
      regs.rbx = 0x1122_3344_5566_7788n;
      t.vcpu.setRegs(regs);
      expect(t.vcpu.getRegs()).toEqual(regs);
      const sregs = t.vcpu.getSregs();
      sregs.gdt = { base: 0x500n, limit: 0x1f };
      t.vcpu.setSregs(sregs);
      expect(t.vcpu.getSregs()).toEqual(sregs);
    });

    it('opaque blobs: fpu, xsave, lapic, vcpu events, debugregs', () => {
      for (const [get, set] of [
        [() => t.vcpu.getFpu(), (b: Uint8Array) => t.vcpu.setFpu(b)],
        [() => t.vcpu.getXsave(), (b: Uint8Array) => t.vcpu.setXsave(b)],
        [() => t.vcpu.getLapic(), (b: Uint8Array) => t.vcpu.setLapic(b)],
        [() => t.vcpu.getVcpuEvents(), (b: Uint8Array) => t.vcpu.setVcpuEvents(b)],
        [() => t.vcpu.getDebugregs(), (b: Uint8Array) => t.vcpu.setDebugregs(b)],
      ] as const) {
        const before = get();
        set(before);
        expect(get()).toEqual(before);
      }
      expect(() => t.vcpu.setLapic(new Uint8Array(10))).toThrow(/1024 bytes/);
    });

    it('xcrs, mp state, tsc khz, cpuid', () => {
      const xcrs = t.vcpu.getXcrs();
      expect(xcrs.xcrs[0]?.xcr).toBe(0);
      t.vcpu.setXcrs(xcrs);
      expect(t.vcpu.getXcrs()).toEqual(xcrs);
      t.vcpu.setMpState(KVM_CONSTANTS.KVM_MP_STATE_RUNNABLE);
      expect(t.vcpu.getMpState()).toBe(KVM_CONSTANTS.KVM_MP_STATE_RUNNABLE);
      expect(t.vcpu.getTscKhz()).toBeGreaterThan(100_000);
      const set = t.vcpu.getCpuid2();
      const leaf0 = t.kvm.supportedCpuid().find((e) => e.function === 0);
      expect(set.find((e) => e.function === 0)).toEqual(leaf0);
    });

    it('msrs: every listed MSR that reads also writes back; a refused MSR is named', () => {
      const readable = t.kvm.msrIndexList().filter((i) => { try { t.vcpu.getMsrs([i]); return true; } catch { return false; } });
      expect(readable.length).toBeGreaterThan(5);
      const entries = t.vcpu.getMsrs(readable);
      const settable = entries.filter((e) => { try { t.vcpu.setMsrs([e]); return true; } catch { return false; } });
      expect(settable.map((e) => e.index)).toContain(0xc000_0081);
      const star = 0xc000_0081;
      t.vcpu.setMsrs([{ index: star, data: 0x0023_0010_0000_0000n }]);
      expect(t.vcpu.getMsrs([star])).toEqual([{ index: star, data: 0x0023_0010_0000_0000n }]);
      expect(() => t.vcpu.getMsrs([0x4b56_4dff])).toThrow(/MSR 0x4b564dff is not readable/);
    });

    it('irqchips (PIC master, PIC slave, IOAPIC), PIT and clock', () => {
      for (const chip of [0, 1, 2] as const) {
        const s = t.vm.getIrqchip(chip);
        expect(s.byteLength).toBe(512);
        t.vm.setIrqchip(chip, s);
        expect(t.vm.getIrqchip(chip)).toEqual(s);
      }
      const pit = t.vm.getPit2();
      t.vm.setPit2(pit);
      const pit2 = t.vm.getPit2();
      // count_load_time (s64 at +16 of each channel) is re-based by the kernel on set: compare the rest.
      for (const off of [0, 24, 48]) { pit.fill(0, off + 16, off + 24); pit2.fill(0, off + 16, off + 24); }
      expect(pit2).toEqual(pit);
      const clock = t.vm.getClock();
      t.vm.setClock({ ...clock, clock: 5_000_000_000n, flags: 0 });
      const after = t.vm.getClock().clock;
      expect(after).toBeGreaterThanOrEqual(5_000_000_000n);
      expect(after).toBeLessThan(6_000_000_000n);
    });
  });
});
