import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { anonymousGuestMemory, type GuestMemory } from '../../../src/memory/guest-memory.js';
import { RawBackend } from '../../../src/block/raw.js';
import type { BlockBackend, ImageFormat } from '../../../src/block/backend.js';
import { VirtioBlk } from '../../../src/devices/block/virtio-blk/device.js';
import {
  VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_ID_BLOCK,
} from '../../../src/devices/block/virtio-blk/spec.js';
import { VirtioMmioTransport, MMIO_DEVICE_ID, MMIO_CONFIG, MMIO_STATUS } from '../../../src/devices/virtio/mmio.js';
import { STATUS_DEVICE_NEEDS_RESET, STATUS_FEATURES_OK, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, bit } from '../../../src/devices/virtio/device.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../src/devices/virtio/chain.js';
import { DeviceStateError } from '../../../src/devices/errors.js';
import { CountingLine, MockQueue, ackInterrupt, bringUp, mmioRead32, notify, readDeviceFeatures, type Buf } from '../virtio/mock-driver.js';

const RAM = 0x200000;
const DISK = 1 << 20;
const QSIZE = 16;
const QBASE = 0x1000;

let dir: string;
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'tsvmm-blk-')); });
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

async function makeDisk(name = 'disk.raw'): Promise<string> {
  const path = join(dir, name);
  const content = new Uint8Array(DISK);
  for (let i = 0; i < DISK; i++) content[i] = (i * 7 + (i >> 9)) & 0xff;
  await writeFile(path, content);
  return path;
}

/** A guest with one virtio-blk over a raw file and a test driver talking to it. */
class Rig {
  readonly irq = new CountingLine();
  readonly errors: string[] = [];
  q: MockQueue;
  private bump = 0x40000;

  constructor(readonly mem: GuestMemory, readonly blk: VirtioBlk, readonly t: VirtioMmioTransport, readonly backend: BlockBackend) {
    this.q = new MockQueue(mem, QBASE, QSIZE);
  }

  static async create(opts: { readOnly?: boolean; features?: bigint; backend?: BlockBackend } = {}): Promise<Rig> {
    const backend = opts.backend ?? await RawBackend.open(await makeDisk(), { readOnly: opts.readOnly ?? false });
    const mem = anonymousGuestMemory([{ guestBase: 0, size: RAM }]);
    const blk = new VirtioBlk(backend, { serial: 'tsvmm-disk-0', queueSize: QSIZE });
    const irq = new CountingLine();
    const errors: string[] = [];
    const t = new VirtioMmioTransport({ device: blk, memory: mem, interrupt: irq, onDeviceError: (r) => errors.push(r) });
    const rig = new Rig(mem, blk, t, backend);
    Object.assign(rig, { irq, errors });
    rig.up(opts.features);
    return rig;
  }

  /** (Re)initialises the device the way Linux does, with a fresh ring. */
  up(features?: bigint): number {
    this.mem.fill(QBASE, 0x3f000);
    this.q = new MockQueue(this.mem, QBASE, QSIZE);
    const f = features ?? readDeviceFeatures(this.t) & ~bit(VIRTIO_F_EVENT_IDX);
    return bringUp(this.t, f, [this.q]);
  }

  alloc(len: number): number {
    const a = this.bump;
    this.bump += Math.ceil(Math.max(len, 1) / 16) * 16;
    return a;
  }

  header(type: number, sector: bigint): Buf {
    const addr = this.alloc(16);
    this.mem.writeU32(addr, type);
    this.mem.writeU32(addr + 4, 0);
    this.mem.writeU64(addr + 8, sector);
    return { addr, len: 16, writable: false };
  }

  status(): Buf {
    const addr = this.alloc(1);
    this.mem.writeU8(addr, 0xee);
    return { addr, len: 1, writable: true };
  }

  /** Submits a request; returns its head and status address. */
  submit(type: number, sector: bigint, data: Buf[] = []): { head: number; statusAddr: number } {
    const st = this.status();
    const head = this.q.addChain([this.header(type, sector), ...data, st]);
    notify(this.t, 0);
    return { head, statusAddr: st.addr };
  }

  async settle(): Promise<void> {
    await this.blk.drain();
    this.blk.resumeProcessing();
  }

  /** Submits, waits, and returns status and used length. */
  async run(type: number, sector: bigint, data: Buf[] = []): Promise<{ status: number; len: number }> {
    const before = this.q.usedIdx();
    const { head, statusAddr } = this.submit(type, sector, data);
    await this.settle();
    expect(this.q.usedIdx()).toBe((before + 1) & 0xffff);
    const e = this.q.usedElem(before);
    expect(e.id).toBe(head);
    return { status: this.mem.readU8(statusAddr), len: e.len };
  }

  needsReset(): boolean {
    return (mmioRead32(this.t, MMIO_STATUS) & STATUS_DEVICE_NEEDS_RESET) !== 0;
  }

  buf(len: number, writable: boolean, fill?: number): Buf {
    const addr = this.alloc(len);
    if (fill !== undefined) this.mem.fill(addr, len, fill);
    return { addr, len, writable };
  }
}

function segment(rig: Rig, sector: bigint, sectors: number, flags: number): Buf {
  const addr = rig.alloc(16);
  rig.mem.writeU64(addr, sector);
  rig.mem.writeU32(addr + 8, sectors);
  rig.mem.writeU32(addr + 12, flags);
  return { addr, len: 16, writable: false };
}

describe('virtio-blk normal requests against a raw file', () => {
  it('identifies as a block device with the expected features and config', async () => {
    const rig = await Rig.create();
    expect(mmioRead32(rig.t, MMIO_DEVICE_ID)).toBe(VIRTIO_ID_BLOCK);
    const f = readDeviceFeatures(rig.t);
    for (const b of [VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_F_SEG_MAX]) {
      expect(f & bit(b), `bit ${b}`).not.toBe(0n);
    }
    expect(f & bit(VIRTIO_BLK_F_RO)).toBe(0n);
    const cfg = new Uint8Array(8);
    rig.t.mmioRead(MMIO_CONFIG, cfg);
    expect(new DataView(cfg.buffer).getBigUint64(0, true)).toBe(BigInt(DISK / 512));
    expect(mmioRead32(rig.t, MMIO_CONFIG + 12)).toBe(QSIZE - 2); // seg_max
    expect(mmioRead32(rig.t, MMIO_CONFIG + 20)).toBe(512); // blk_size
    await rig.backend.close();
  });

  it('OUT lands at the right offset, IN reads it back, FLUSH and GET_ID complete', async () => {
    const rig = await Rig.create();
    const path = (rig.backend as RawBackend).path;
    const w = rig.buf(1024, false);
    rig.mem.slice(w.addr, 1024).set(new Uint8Array(1024).map((_, i) => (i * 13) & 0xff));
    expect(await rig.run(VIRTIO_BLK_T_OUT, 3n, [w])).toEqual({ status: VIRTIO_BLK_S_OK, len: 1 });
    const file = await readFile(path);
    expect(Buffer.compare(file.subarray(1536, 2560), Buffer.from(rig.mem.read(w.addr, 1024)))).toBe(0);
    expect(file[1535]).toBe((1535 * 7 + 2) & 0xff); // neighbours untouched
    expect(file[2560]).toBe((2560 * 7 + 5) & 0xff);

    // Read back across two descriptors.
    const r1 = rig.buf(512, true, 0);
    const r2 = rig.buf(512, true, 0);
    expect(await rig.run(VIRTIO_BLK_T_IN, 3n, [r1, r2])).toEqual({ status: VIRTIO_BLK_S_OK, len: 1025 });
    expect([...rig.mem.read(r1.addr, 512), ...rig.mem.read(r2.addr, 512)]).toEqual([...rig.mem.read(w.addr, 1024)]);

    expect(await rig.run(VIRTIO_BLK_T_FLUSH, 0n)).toEqual({ status: VIRTIO_BLK_S_OK, len: 1 });
    const id = rig.buf(20, true, 0xaa);
    expect(await rig.run(VIRTIO_BLK_T_GET_ID, 0n, [id])).toEqual({ status: VIRTIO_BLK_S_OK, len: 21 });
    expect(Buffer.from(rig.mem.read(id.addr, 20)).toString('latin1')).toBe('tsvmm-disk-0\0\0\0\0\0\0\0\0');

    const c = rig.blk.counters();
    expect(c).toMatchObject({ read_ops: 1, read_bytes: 1024, write_ops: 1, write_bytes: 1024, flush_ops: 1, discard_ops: 0, write_zeroes_ops: 0, errors: 0 });
    // Cloud Hypervisor's latency fields, in microseconds: one read and one write, so min = max = avg.
    for (const kind of ['read', 'write'] as const) {
      const [min, max, avg] = [c[`${kind}_latency_min`], c[`${kind}_latency_max`], c[`${kind}_latency_avg`]];
      expect(Number.isInteger(min) && min > 0, `${kind} latency ${min}`).toBe(true);
      expect([max, avg]).toEqual([min, min]);
    }
    expect(rig.irq.count).toBeGreaterThanOrEqual(4);
    await rig.backend.close();
  });

  it('DISCARD and WRITE_ZEROES zero the ranges they name and nothing else', async () => {
    const rig = await Rig.create();
    const path = (rig.backend as RawBackend).path;
    expect((await rig.run(VIRTIO_BLK_T_DISCARD, 0n, [segment(rig, 8n, 8, 0)])).status).toBe(VIRTIO_BLK_S_OK);
    expect((await rig.run(VIRTIO_BLK_T_WRITE_ZEROES, 0n, [segment(rig, 32n, 2, 0), segment(rig, 40n, 1, 1)])).status).toBe(VIRTIO_BLK_S_OK);
    const file = await readFile(path);
    expect(file.subarray(4096, 8192).every((b) => b === 0)).toBe(true);
    expect(file.subarray(32 * 512, 34 * 512).every((b) => b === 0)).toBe(true);
    expect(file.subarray(40 * 512, 41 * 512).every((b) => b === 0)).toBe(true);
    expect(file.subarray(3584, 4096).some((b) => b !== 0)).toBe(true);
    expect(file.subarray(34 * 512, 40 * 512).some((b) => b !== 0)).toBe(true);
    expect(file.length).toBe(DISK);
    const c = rig.blk.counters();
    expect([c.discard_ops, c.write_zeroes_ops, c.errors]).toEqual([1, 1, 0]);
    await rig.backend.close();
  });

  it('reads through an indirect table', async () => {
    const rig = await Rig.create({ features: bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) });
    const r = rig.buf(512, true, 0);
    const st = rig.status();
    rig.q.publish(rig.q.buildIndirect([rig.header(VIRTIO_BLK_T_IN, 1n), r, st], rig.alloc(48)));
    notify(rig.t, 0);
    await rig.settle();
    expect(rig.mem.readU8(st.addr)).toBe(VIRTIO_BLK_S_OK);
    expect(rig.q.usedElem(0).len).toBe(513);
    expect(rig.mem.readU8(r.addr + 1)).toBe((513 * 7 + 1) & 0xff);
    await rig.backend.close();
  });
});

describe('virtio-blk hostile requests complete without touching the backend', () => {
  async function expectStatus(rig: Rig, want: number, type: number, sector: bigint, data: Buf[]) {
    const before = rig.blk.counters();
    const res = await rig.run(type, sector, data);
    expect(res.status, `type ${type} sector ${sector}`).toBe(want);
    const after = rig.blk.counters();
    expect(after.errors).toBe(before.errors + 1);
    expect([after.read_ops, after.write_ops, after.discard_ops, after.write_zeroes_ops]).toEqual([before.read_ops, before.write_ops, before.discard_ops, before.write_zeroes_ops]);
    expect(rig.needsReset()).toBe(false);
  }

  it('a grown image: the config space shows the new capacity and sectors past the old end work', async () => {
    const rig = await Rig.create();
    const capacity = (): bigint => {
      const cfg = new Uint8Array(8);
      rig.t.mmioRead(MMIO_CONFIG, cfg);
      return new DataView(cfg.buffer).getBigUint64(0, true);
    };
    const oldEnd = BigInt(DISK / 512);
    const status = async (type: number, sector: bigint, data: Buf[]): Promise<number> => (await rig.run(type, sector, data)).status;
    expect(await status(VIRTIO_BLK_T_OUT, oldEnd, [rig.buf(512, false)])).toBe(VIRTIO_BLK_S_IOERR);
    // Only between drain() and resumeProcessing(): no request checked against the old size runs on.
    expect(() => rig.blk.capacityChanged()).toThrow(/drain\(\) first/);
    await rig.blk.drain();
    await rig.backend.resize(2 * DISK);
    rig.blk.capacityChanged();
    rig.blk.resumeProcessing();
    expect(capacity()).toBe(2n * oldEnd);
    expect(rig.blk.capacitySectors).toBe(2 * DISK / 512);
    expect(await status(VIRTIO_BLK_T_OUT, oldEnd, [rig.buf(512, false, 0xab)])).toBe(VIRTIO_BLK_S_OK);
    const back = rig.buf(512, true);
    expect(await status(VIRTIO_BLK_T_IN, oldEnd, [back])).toBe(VIRTIO_BLK_S_OK);
    expect(rig.mem.readU8(back.addr + 511)).toBe(0xab);
    expect(await status(VIRTIO_BLK_T_IN, 2n * oldEnd, [rig.buf(512, true)])).toBe(VIRTIO_BLK_S_IOERR);
    await rig.backend.close();
  });

  it('wrong directions, bad sizes and sectors past the end give IOERR; unknown types UNSUPP', async () => {
    const rig = await Rig.create();
    const path = (rig.backend as RawBackend).path;
    const original = await readFile(path);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_IN, 0n, [rig.buf(512, false)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_OUT, 0n, [rig.buf(512, true)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_OUT, 0n, [rig.buf(100, false)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_OUT, BigInt(DISK / 512), [rig.buf(512, false)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_IN, BigInt(DISK / 512 - 1), [rig.buf(1024, true)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_OUT, 0xffff_ffff_ffff_ffffn, [rig.buf(512, false)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_OUT, 1n << 55n, [rig.buf(512, false)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_GET_ID, 0n, [rig.buf(20, false)]);
    await expectStatus(rig, VIRTIO_BLK_S_UNSUPP, 99, 0n, []);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_FLUSH, 0n, [rig.buf(512, false)]);

    // Header writable, or shorter than 16 bytes.
    for (const hdr of [{ writable: true, len: 16 }, { writable: false, len: 8 }]) {
      const h = rig.header(VIRTIO_BLK_T_OUT, 0n);
      const st = rig.status();
      rig.q.addChain([{ ...h, ...hdr }, rig.buf(512, false), st]);
      notify(rig.t, 0);
      await rig.settle();
      expect(rig.mem.readU8(st.addr)).toBe(VIRTIO_BLK_S_IOERR);
    }
    expect(Buffer.compare(await readFile(path), original)).toBe(0);
    await rig.backend.close();
  });

  it('a missing or malformed status descriptor returns the chain with nothing written', async () => {
    const rig = await Rig.create();
    const cases: Buf[][] = [
      [rig.header(VIRTIO_BLK_T_IN, 0n), rig.buf(512, true), rig.buf(2, true, 0xee)], // status 2 bytes
      [rig.header(VIRTIO_BLK_T_IN, 0n), rig.buf(1, false, 0xee)], // status readable
      [rig.header(VIRTIO_BLK_T_FLUSH, 0n)], // no status at all
    ];
    for (const c of cases) {
      const before = rig.q.usedIdx();
      rig.q.addChain(c);
      notify(rig.t, 0);
      await rig.settle();
      expect(rig.q.usedElem(before).len).toBe(0);
      const last = c[c.length - 1]!;
      if (last.len <= 2 && c.length > 1) expect(rig.mem.readU8(last.addr + last.len - 1)).toBe(0xee);
    }
    expect(rig.blk.counters().read_ops).toBe(0);
    expect(rig.blk.counters().errors).toBe(3);
    expect(rig.needsReset()).toBe(false);
    await rig.backend.close();
  });

  it('discard/write-zeroes: bad flags UNSUPP, too many segments or out of range IOERR', async () => {
    const rig = await Rig.create();
    await expectStatus(rig, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, 0n, [segment(rig, 0n, 1, 1)]); // unmap on discard
    await expectStatus(rig, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_WRITE_ZEROES, 0n, [segment(rig, 0n, 1, 2)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_DISCARD, 0n, [segment(rig, BigInt(DISK / 512), 1, 0)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_DISCARD, 0n, [segment(rig, 0xffff_ffff_ffff_fff0n, 32, 0)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_DISCARD, 0n, Array.from({ length: 33 }, () => segment(rig, 0n, 1, 0)));
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_DISCARD, 0n, [rig.buf(8, false)]);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_DISCARD, 0n, [{ ...segment(rig, 0n, 1, 0), writable: true }]);
    await rig.backend.close();
  });

  it('a read-only disk offers RO, refuses writes, and its driver cannot negotiate discard', async () => {
    const rig = await Rig.create({ readOnly: true });
    const f = readDeviceFeatures(rig.t);
    expect(f & bit(VIRTIO_BLK_F_RO)).not.toBe(0n);
    expect(f & bit(VIRTIO_BLK_F_DISCARD)).toBe(0n);
    await expectStatus(rig, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_T_OUT, 0n, [rig.buf(512, false)]);
    await expectStatus(rig, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, 0n, [segment(rig, 0n, 1, 0)]);
    await expectStatus(rig, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_WRITE_ZEROES, 0n, [segment(rig, 0n, 1, 0)]);
    expect((await rig.run(VIRTIO_BLK_T_IN, 0n, [rig.buf(512, true)])).status).toBe(VIRTIO_BLK_S_OK);
    // A driver acking DISCARD anyway does not get FEATURES_OK.
    expect(rig.up(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_BLK_F_DISCARD)) & STATUS_FEATURES_OK).toBe(0);
    await rig.backend.close();
  });
});

describe('virtio-blk broken queues set DEVICE_NEEDS_RESET and recover after reset', () => {
  const breakers: Array<[string, (rig: Rig) => void]> = [
    ['descriptor loop', (rig) => {
      rig.q.writeDesc(0, rig.alloc(16), 16, VIRTQ_DESC_F_NEXT, 1);
      rig.q.writeDesc(1, rig.alloc(1), 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 0);
      rig.q.publish(0);
    }],
    ['chain longer than the queue', (rig) => {
      for (let i = 0; i < QSIZE; i++) rig.q.writeDesc(i, rig.alloc(16), 16, VIRTQ_DESC_F_NEXT, (i + 1) % QSIZE);
      rig.q.publish(0);
    }],
    ['next index out of range', (rig) => {
      rig.q.writeDesc(0, rig.alloc(16), 16, VIRTQ_DESC_F_NEXT, QSIZE + 3);
      rig.q.publish(0);
    }],
    ['head index out of range', (rig) => rig.q.publish(QSIZE)],
    ['buffer outside RAM', (rig) => { rig.q.addChain([rig.header(VIRTIO_BLK_T_IN, 0n), { addr: RAM - 256, len: 512, writable: true }, rig.status()]); }],
    ['length overflowing the address space', (rig) => { rig.q.addChain([rig.header(VIRTIO_BLK_T_IN, 0n), { addr: 0x50000, len: 0xffff_ffff, writable: true }, rig.status()]); }],
    ['avail index jump', (rig) => rig.q.setAvailIdx(QSIZE + 1)],
    ['indirect not negotiated', (rig) => { rig.up(bit(VIRTIO_F_VERSION_1)); rig.q.publish(rig.q.buildIndirect([rig.header(VIRTIO_BLK_T_FLUSH, 0n), rig.status()], rig.alloc(32))); }],
    ['indirect table of bad length', (rig) => {
      const h = rig.q.buildChain([{ addr: 0, len: 0, writable: false }]);
      rig.q.writeDesc(h, rig.alloc(64), 40, VIRTQ_DESC_F_INDIRECT, 0);
      rig.q.publish(h);
    }],
  ];

  for (const [name, breakIt] of breakers) {
    it(name, async () => {
      const rig = await Rig.create();
      breakIt(rig);
      notify(rig.t, 0);
      await rig.settle();
      expect(rig.needsReset()).toBe(true);
      expect(ackInterrupt(rig.t) & 2).toBe(2); // configuration change interrupt
      expect(rig.errors.length).toBe(1);
      const before = rig.blk.counters();
      rig.q.addChain([rig.header(VIRTIO_BLK_T_FLUSH, 0n), rig.status()]);
      notify(rig.t, 0);
      await rig.settle();
      expect(rig.blk.counters().flush_ops).toBe(before.flush_ops); // stopped
      // Driver resets and starts over: the device works again.
      rig.up();
      expect(rig.needsReset()).toBe(false);
      const r = rig.buf(512, true);
      expect(await rig.run(VIRTIO_BLK_T_IN, 2n, [r])).toEqual({ status: VIRTIO_BLK_S_OK, len: 513 });
      await rig.backend.close();
    });
  }

  it('bogus queue size or ring outside RAM at setup', async () => {
    const rig = await Rig.create();
    rig.mem.fill(QBASE, 0x3f000);
    for (const q of [{ desc: QBASE, avail: QBASE + 0x200, used: QBASE + 0x1000, size: 12 }, { desc: RAM - 0x40, avail: QBASE + 0x200, used: QBASE + 0x1000, size: 16 }]) {
      bringUp(rig.t, bit(VIRTIO_F_VERSION_1), [q]);
      expect(rig.needsReset()).toBe(true);
    }
    expect(rig.up() & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    expect((await rig.run(VIRTIO_BLK_T_FLUSH, 0n)).status).toBe(VIRTIO_BLK_S_OK);
    await rig.backend.close();
  });
});

/** A backend whose reads wait until the test releases them, to control completion order. */
class GatedBackend implements BlockBackend {
  readonly gates: Array<() => void> = [];
  constructor(private readonly inner: BlockBackend) {}
  get path() { return this.inner.path; }
  get size() { return this.inner.size; }
  get readOnly() { return this.inner.readOnly; }
  get format(): ImageFormat { return this.inner.format; }
  get backing() { return this.inner.backing; }
  blockStatus(o: number, l: number) { return this.inner.blockStatus(o, l); }
  async read(offset: number, into: Uint8Array): Promise<void> {
    await new Promise<void>((r) => this.gates.push(r));
    return this.inner.read(offset, into);
  }
  write(o: number, d: Uint8Array) { return this.inner.write(o, d); }
  flush() { return this.inner.flush(); }
  discard(o: number, l: number) { return this.inner.discard(o, l); }
  writeZeroes(o: number, l: number, u: boolean) { return this.inner.writeZeroes(o, l, u); }
  resize(n: number) { return this.inner.resize(n); }
  close() { return this.inner.close(); }
}

const tick = () => new Promise((r) => setImmediate(r));

/** Waits (up to 5 s) for a condition that a thread-pool file read will make true. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

describe('virtio-blk asynchronous completion, drain, EVENT_IDX, reset, state', () => {
  it('completes in completion order with several requests in flight; drain waits for them', async () => {
    const gated = new GatedBackend(await RawBackend.open(await makeDisk()));
    const rig = await Rig.create({ backend: gated });
    const a = rig.submit(VIRTIO_BLK_T_IN, 0n, [rig.buf(512, true)]);
    const b = rig.submit(VIRTIO_BLK_T_IN, 1n, [rig.buf(512, true)]);
    await tick();
    expect(rig.blk.requestsInFlight).toBe(2);
    let drained = false;
    const d = rig.blk.drain().then(() => { drained = true; });
    // New requests wait while drained.
    const c = rig.submit(VIRTIO_BLK_T_FLUSH, 0n);
    gated.gates[1]!();
    await until(() => rig.q.usedIdx() === 1);
    expect(rig.q.usedIdx()).toBe(1);
    expect(rig.q.usedElem(0).id).toBe(b.head);
    expect(drained).toBe(false);
    gated.gates[0]!();
    await d;
    expect(drained).toBe(true);
    expect(rig.q.usedIdx()).toBe(2);
    expect(rig.q.usedElem(1).id).toBe(a.head);
    expect(rig.mem.readU8(c.statusAddr)).toBe(0xee); // not started
    rig.blk.resumeProcessing();
    await rig.blk.drain();
    expect(rig.mem.readU8(c.statusAddr)).toBe(VIRTIO_BLK_S_OK);
    await gated.close();
  });

  it('drops completions of requests in flight across a reset', async () => {
    const gated = new GatedBackend(await RawBackend.open(await makeDisk()));
    const rig = await Rig.create({ backend: gated });
    const r = rig.submit(VIRTIO_BLK_T_IN, 0n, [rig.buf(512, true)]);
    await tick();
    rig.up();
    gated.gates[0]!();
    await rig.settle();
    expect(rig.q.usedIdx()).toBe(0);
    expect(rig.mem.readU8(r.statusAddr)).toBe(0xee); // the stale completion wrote nothing
    await gated.close();
  });

  it('EVENT_IDX: interrupts only when used_event is crossed; avail_event tracks progress', async () => {
    const rig = await Rig.create({ features: bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) });
    await rig.run(VIRTIO_BLK_T_FLUSH, 0n);
    expect(rig.irq.count).toBe(1);
    expect(rig.q.availEvent()).toBe(1);
    rig.q.setUsedEvent(3); // interrupt when the 4th completion is published
    await rig.run(VIRTIO_BLK_T_FLUSH, 0n);
    await rig.run(VIRTIO_BLK_T_FLUSH, 0n);
    expect(rig.irq.count).toBe(1);
    await rig.run(VIRTIO_BLK_T_FLUSH, 0n);
    expect(rig.irq.count).toBe(2);
    expect(rig.q.availEvent()).toBe(4);
    await rig.backend.close();
  });

  it('state round-trips through the transport and is checked against the disk', async () => {
    const rig = await Rig.create();
    await rig.run(VIRTIO_BLK_T_FLUSH, 0n);
    await rig.blk.drain();
    const s = rig.t.state();
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
    const blk2 = VirtioBlk.fromState({ backend: rig.backend }, s.device as ReturnType<VirtioBlk['state']>);
    const irq = new CountingLine();
    const t2 = VirtioMmioTransport.fromState({ device: blk2, memory: rig.mem, interrupt: irq }, s);
    expect(t2.state()).toEqual(s);
    // The restored device serves the same ring.
    const st = rig.status();
    rig.q.addChain([rig.header(VIRTIO_BLK_T_FLUSH, 0n), st]);
    t2.queueNotify(0);
    await blk2.drain();
    expect(rig.mem.readU8(st.addr)).toBe(VIRTIO_BLK_S_OK);
    const other = { ...rig.backend, size: DISK * 2, readOnly: false } as BlockBackend;
    expect(() => VirtioBlk.fromState({ backend: other }, s.device as ReturnType<VirtioBlk['state']>)).toThrow(DeviceStateError);
    expect(() => VirtioBlk.fromState({ backend: rig.backend }, { ...(s.device as ReturnType<VirtioBlk['state']>), queueSize: 12 })).toThrow(DeviceStateError);
    await rig.backend.close();
  });
});

/** Delegates to a raw file and records each write request the device makes of it. */
class RecordingBackend implements BlockBackend {
  readonly calls: Array<{ op: 'write' | 'writev'; offset: number; lengths: number[] }> = [];
  failWritev = false;
  constructor(private readonly inner: RawBackend) {}
  get path() { return this.inner.path; }
  get size() { return this.inner.size; }
  get readOnly() { return this.inner.readOnly; }
  get format(): ImageFormat { return this.inner.format; }
  get backing() { return this.inner.backing; }
  blockStatus(o: number, l: number) { return this.inner.blockStatus(o, l); }
  read(o: number, into: Uint8Array) { return this.inner.read(o, into); }
  write(o: number, d: Uint8Array) {
    this.calls.push({ op: 'write', offset: o, lengths: [d.byteLength] });
    return this.inner.write(o, d);
  }
  async writev(o: number, parts: Uint8Array[]) {
    this.calls.push({ op: 'writev', offset: o, lengths: parts.map((p) => p.byteLength) });
    if (this.failWritev) throw new Error('EIO from the host');
    return this.inner.writev(o, parts);
  }
  flush() { return this.inner.flush(); }
  discard(o: number, l: number) { return this.inner.discard(o, l); }
  writeZeroes(o: number, l: number, u: boolean) { return this.inner.writeZeroes(o, l, u); }
  resize(n: number) { return this.inner.resize(n); }
  close() { return this.inner.close(); }
}

describe('virtio-blk merges sequential writes of one queue pass', () => {
  /** Queues OUT requests without notifying, then notifies once: one pass sees them all. */
  function queueWrites(rig: Rig, writes: Array<{ sector: bigint; bufs: Buf[] }>): number[] {
    const statuses = writes.map(({ sector, bufs }) => {
      const st = rig.status();
      rig.q.addChain([rig.header(VIRTIO_BLK_T_OUT, sector), ...bufs, st]);
      return st.addr;
    });
    notify(rig.t, 0);
    return statuses;
  }

  it('one host write for requests that continue each other; others alone; data and counters exact', async () => {
    const raw = await RawBackend.open(await makeDisk());
    const rec = new RecordingBackend(raw);
    const rig = await Rig.create({ backend: rec });
    const a1 = rig.buf(512, false, 0xa1);
    const a2 = rig.buf(512, false, 0xa2);
    const b = rig.buf(512, false, 0xb0);
    const c = rig.buf(1024, false, 0xc0);
    // Submitted out of disk order: sectors 6, 20 (alone), 4-5 (two descriptors).
    const statuses = queueWrites(rig, [{ sector: 6n, bufs: [b] }, { sector: 20n, bufs: [c] }, { sector: 4n, bufs: [a1, a2] }]);
    await rig.settle();
    expect(statuses.map((s) => rig.mem.readU8(s))).toEqual([VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK]);
    expect(rig.q.usedIdx()).toBe(3);
    expect(rec.calls).toEqual([
      { op: 'writev', offset: 4 * 512, lengths: [512, 512, 512] },
      { op: 'write', offset: 20 * 512, lengths: [1024] },
    ]);
    const file = await readFile(raw.path);
    expect([file[4 * 512], file[5 * 512 + 511], file[6 * 512], file[7 * 512 - 1], file[20 * 512], file[22 * 512 - 1]]).toEqual([0xa1, 0xa2, 0xb0, 0xb0, 0xc0, 0xc0]);
    expect(file[7 * 512]).toBe((7 * 512 * 7 + 7) & 0xff); // the next sector is untouched
    expect(rig.blk.counters()).toMatchObject({ write_ops: 3, write_bytes: 2560, errors: 0 });
    await rec.close();
  });

  it('a failed merged write fails each of its requests with IOERR, and the device keeps working', async () => {
    const raw = await RawBackend.open(await makeDisk());
    const rec = new RecordingBackend(raw);
    const rig = await Rig.create({ backend: rec });
    rec.failWritev = true;
    const statuses = queueWrites(rig, [{ sector: 0n, bufs: [rig.buf(512, false, 1)] }, { sector: 1n, bufs: [rig.buf(512, false, 2)] }]);
    await rig.settle();
    expect(statuses.map((s) => rig.mem.readU8(s))).toEqual([VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_IOERR]);
    expect(rig.errors).toEqual([]); // no DEVICE_NEEDS_RESET: only the requests failed
    expect(rig.blk.counters()).toMatchObject({ write_ops: 0, errors: 2 });
    rec.failWritev = false;
    expect(await rig.run(VIRTIO_BLK_T_OUT, 0n, [rig.buf(512, false, 3)])).toEqual({ status: VIRTIO_BLK_S_OK, len: 1 });
    await rec.close();
  });
});
