/**
 * The body of one vCPU thread. It owns nothing but the vCPU fd's run loop: every port or MMIO
 * access a device claims is answered by the main thread through the shared mailbox (see
 * vcpu-protocol.ts; the serial fast path and unclaimed ports are answered here), and
 * every state save/restore happens here while the loop is stopped.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { VcpuFd } from '../kvm/vcpu.js';
import { pthreadSelf } from '../sys/libc.js';
import { TsvmmError } from '../errors.js';
import type { AddressRange } from '../devices/bus.js';
import { SerialFastPathClient } from './serial-fastpath.js';
import {
  AccessKind, CONTROL_STOP, DATA_BYTES, STATE_IDLE, STATE_REQUEST, UNCLAIMED_PORTS_COUNTER, VCPU_CALLS,
  WORD_ADDR_HI, WORD_ADDR_LO, WORD_CONTROL, WORD_COUNT, WORD_KIND, WORD_SIZE, WORD_STATE,
  counterIndex, createMailbox, type FromWorker, type Mailbox, type StopReason, type ToWorker,
} from './vcpu-protocol.js';

const port = parentPort;
if (port === null) throw new Error('vcpu-worker must run in a worker thread');

let vcpu: VcpuFd | undefined;
let mailbox: Mailbox | undefined;
let serial: SerialFastPathClient | undefined;
/** One byte per port, 1 where a device claims it: the check on every port exit is one load. */
let claimedPorts: Uint8Array = new Uint8Array(0x10000);

const post = (m: FromWorker): void => port.postMessage(m);

const C_IO = counterIndex('io');
const C_MMIO = counterIndex('mmio');
const C_INTR = counterIndex('intr');
const C_HLT = counterIndex('hlt');
const C_OTHER = counterIndex('other');

function claimedPortMap(ranges: readonly AddressRange[]): Uint8Array {
  const map = new Uint8Array(0x10000);
  for (const r of ranges) map.fill(1, r.base, Math.min(r.base + r.size, map.length));
  return map;
}

/** Hands one access to the main thread and sleeps until it is answered. */
function exchange(mb: Mailbox, kind: AccessKind, addr: number, size: number, count: number): void {
  const w = mb.words;
  w[WORD_KIND] = kind;
  w[WORD_ADDR_LO] = addr >>> 0;
  w[WORD_ADDR_HI] = Math.floor(addr / 0x1_0000_0000);
  w[WORD_SIZE] = size;
  w[WORD_COUNT] = count;
  Atomics.store(w, WORD_STATE, STATE_REQUEST);
  Atomics.notify(w, WORD_STATE);
  while (Atomics.load(w, WORD_STATE) === STATE_REQUEST) Atomics.wait(w, WORD_STATE, STATE_REQUEST);
  Atomics.store(w, WORD_STATE, STATE_IDLE);
}

/** KVM_INTERNAL_ERROR_* names (suberror 1, emulation failure, is the one PVM hosts produce). */
const INTERNAL_ERRORS: Record<number, string> = { 1: 'emulation failure', 2: 'simultaneous exception', 3: 'delivery event failure', 4: 'unexpected exit reason' };

/**
 * Where a vCPU was, so a triple fault or failure can be traced to an instruction. On AMD, KVM
 * re-initialises a vCPU on a SHUTDOWN intercept (its VMCB is undefined afterwards), so after a
 * triple fault its registers read as after INIT (CS:IP F000:FFF0) and the faulting place is lost:
 * say so rather than print misleading values.
 */
function describeCpu(v: VcpuFd): string {
  try {
    const hex = (x: bigint): string => `0x${x.toString(16)}`;
    const rip = v.getRegs().rip;
    const s = v.getSregs();
    if (rip === 0xfff0n && s.cs.selector === 0xf000) return 'an unknown place (KVM re-initialised the vCPU, as it does on AMD hosts)';
    return `rip ${hex(rip)} cs ${hex(BigInt(s.cs.selector))} cr0 ${hex(s.cr0)} cr2 ${hex(s.cr2)} cr3 ${hex(s.cr3)} cr4 ${hex(s.cr4)} efer ${hex(s.efer)} idt ${hex(s.idt.base)}/${s.idt.limit}`;
  } catch {
    return 'registers unreadable'; // a courtesy only; the exit itself is what matters
  }
}

/** What KVM reported, and where, so a failure can be traced to an instruction. */
function describeInternalError(v: VcpuFd, suberror: number, data: bigint[]): string {
  const where = ` at ${describeCpu(v)}`;
  const words = data.length > 0 ? ` (data ${data.map((d) => `0x${d.toString(16)}`).join(' ')})` : '';
  return `KVM internal error: ${INTERNAL_ERRORS[suberror] ?? `suberror ${suberror}`}${where}${words}`;
}

/**
 * Runs the vCPU until it is stopped or the guest ends the VM.
 *
 * A port or MMIO access that left KVM_RUN is only complete once KVM_RUN is entered again: KVM
 * then writes the data of an `in`/MMIO read into the guest's registers and moves RIP past the
 * instruction (KVM API, "KVM_RUN": complete pending operations before saving state). So a stop
 * requested while an access is being answered runs KVM_RUN once more with immediate_exit set,
 * which completes the access and returns at once, before the loop ends. Stopping without it
 * left RIP on the instruction in the saved state: a restored guest executed it a second time,
 * repeating the access (a second read of a UART's IIR or RBR consumes an event or a byte the
 * first read already took).
 */
function runLoop(v: VcpuFd, mb: Mailbox): StopReason {
  const w = mb.words;
  const counters = mb.counters;
  v.setImmediateExit(false);
  let accessPending = false;
  for (;;) {
    if (Atomics.load(w, WORD_CONTROL) === CONTROL_STOP) {
      if (!accessPending) return { kind: 'kicked' };
      v.setImmediateExit(true);
    }
    const exit = v.run();
    accessPending = exit.kind === 'io' || exit.kind === 'mmio';
    switch (exit.kind) {
      case 'io': {
        counters[C_IO]! += 1;
        const bytes = exit.size * exit.count;
        if (serial !== undefined && exit.size === 1) {
          if (exit.direction === 'out' && exit.port === serial.thrPort && serial.write(exit.data.subarray(0, bytes))) break;
          if (exit.direction === 'in' && exit.port === serial.lsrPort && exit.count === 1) {
            const lsr = serial.lsr();
            if (lsr >= 0) { exit.data[0] = lsr; break; }
          }
        }
        if (claimedPorts[exit.port] !== 1) {
          // No device: the same answer the main thread's bus would give, without the round trip.
          counters[UNCLAIMED_PORTS_COUNTER]! += exit.count;
          if (exit.direction === 'in') exit.data.fill(0xff, 0, bytes);
          break;
        }
        if (bytes > DATA_BYTES) return { kind: 'error', code: 'EVCPU', message: `port I/O of ${bytes} bytes is larger than the mailbox` };
        if (exit.direction === 'out') {
          mb.data.set(exit.data.subarray(0, bytes));
          exchange(mb, AccessKind.PioOut, exit.port, exit.size, exit.count);
        } else {
          exchange(mb, AccessKind.PioIn, exit.port, exit.size, exit.count);
          exit.data.set(mb.data.subarray(0, bytes));
        }
        break;
      }
      case 'mmio': {
        counters[C_MMIO]! += 1;
        const len = exit.data.byteLength;
        if (exit.isWrite) {
          mb.data.set(exit.data);
          exchange(mb, AccessKind.MmioWrite, exit.address, len, 1);
        } else {
          exchange(mb, AccessKind.MmioRead, exit.address, len, 1);
          exit.data.set(mb.data.subarray(0, len));
        }
        break;
      }
      case 'intr':
        counters[C_INTR]! += 1;
        break;
      case 'hlt':
        // Only seen without an in-kernel LAPIC; with one, HLT never leaves the kernel.
        counters[C_HLT]! += 1;
        break;
      case 'shutdown':
        counters[C_OTHER]! += 1;
        return { kind: 'shutdown', where: describeCpu(v) };
      case 'system_event':
        counters[C_OTHER]! += 1;
        return { kind: 'system_event', type: exit.type };
      case 'internal_error':
        counters[C_OTHER]! += 1;
        return { kind: 'internal_error', suberror: exit.suberror, message: describeInternalError(v, exit.suberror, exit.data) };
      case 'fail_entry':
        counters[C_OTHER]! += 1;
        return { kind: 'fail_entry', reason: String(exit.reason) };
      default:
        counters[C_OTHER]! += 1;
        return { kind: 'error', code: 'EVCPU', message: `unsupported vCPU exit: ${JSON.stringify(exit, (_k, x) => (typeof x === 'bigint' ? x.toString() : x))}` };
    }
  }
}

function errorOf(e: unknown): { code: string; message: string } {
  if (e instanceof TsvmmError) return { code: e.code, message: e.message };
  return { code: 'EVCPU', message: e instanceof Error ? e.message : String(e) };
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'init':
      mailbox = createMailbox(m.mailbox);
      serial = m.fastPaths.serial === undefined ? undefined : new SerialFastPathClient(m.fastPaths.serial);
      claimedPorts = claimedPortMap(m.fastPaths.claimedPorts);
      vcpu = VcpuFd.attach({ fd: m.fd, runAddress: m.runAddress, runSize: m.runSize });
      post({ type: 'ready', threadId: pthreadSelf() });
      return;
    case 'run': {
      let reason: StopReason;
      try {
        reason = runLoop(vcpu!, mailbox!);
      } catch (e) {
        reason = { kind: 'error', ...errorOf(e) };
      }
      post({ type: 'stopped', reason });
      return;
    }
    case 'call': {
      if (!(VCPU_CALLS as readonly string[]).includes(m.method)) {
        post({ type: 'result', id: m.id, ok: false, error: { code: 'EVCPU', message: `unknown vCPU call ${m.method}` } });
        return;
      }
      try {
        const fn = (vcpu as unknown as Record<string, (...a: unknown[]) => unknown>)[m.method]!;
        const value = fn.apply(vcpu, m.args);
        post({ type: 'result', id: m.id, ok: true, value });
      } catch (e) {
        post({ type: 'result', id: m.id, ok: false, error: errorOf(e) });
      }
      return;
    }
    case 'exit':
      port.close();
      return;
  }
});

// Every import (koffi included) has evaluated: the process may now stop this thread safely.
const loaded = (workerData as { loaded: Int32Array }).loaded;
Atomics.store(loaded, 0, 1);
Atomics.notify(loaded, 0);
