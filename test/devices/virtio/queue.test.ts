import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory } from '../../../src/memory/guest-memory.js';
import { Virtqueue, VIRTQ_AVAIL_F_NO_INTERRUPT } from '../../../src/devices/virtio/queue.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT } from '../../../src/devices/virtio/chain.js';
import { DeviceStateError, VirtqueueError } from '../../../src/devices/errors.js';
import { MockQueue } from './mock-driver.js';

const RAM = 0x100000;

function setup(size = 16, opts: { indirect?: boolean; eventIdx?: boolean } = {}) {
  const mem = anonymousGuestMemory([{ guestBase: 0, size: RAM }]);
  const mq = new MockQueue(mem, 0x10000, size);
  const q = new Virtqueue(mem, 256);
  q.size = size;
  q.descTable = mq.desc;
  q.availRing = mq.avail;
  q.usedRing = mq.used;
  q.indirect = opts.indirect ?? false;
  q.eventIdx = opts.eventIdx ?? false;
  q.validate();
  q.ready = true;
  return { mem, mq, q };
}

describe('Virtqueue configuration', () => {
  it('accepts a valid layout and rejects bad sizes and addresses', () => {
    const { q } = setup();
    for (const size of [0, 3, 48, 512]) {
      q.size = size;
      expect(() => q.validate(), `size ${size}`).toThrow(VirtqueueError);
    }
    q.size = 16;
    q.validate();
    const desc = q.descTable;
    q.descTable = desc + 8; // not 16-aligned
    expect(() => q.validate()).toThrow(/aligned/);
    q.descTable = RAM - 16; // runs past RAM
    expect(() => q.validate()).toThrow(/not inside guest RAM/);
    q.descTable = desc;
    q.availRing = 0x10001;
    expect(() => q.validate()).toThrow(/aligned/);
    q.availRing = RAM + 0x1000;
    expect(() => q.validate()).toThrow(/not inside guest RAM/);
  });

  it('state round-trips and is re-validated', () => {
    const { mem, q, mq } = setup();
    mq.addChain([{ addr: 0x20000, len: 8, writable: false }]);
    q.popChain();
    const s = q.state();
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
    const back = Virtqueue.fromState(mem, s);
    expect(back.state()).toEqual(s);
    expect(() => Virtqueue.fromState(mem, { ...s, size: 24 })).toThrow(DeviceStateError);
    expect(() => Virtqueue.fromState(mem, { ...s, usedRing: RAM })).toThrow(DeviceStateError);
    expect(() => Virtqueue.fromState(mem, { ...s, nextAvail: 70000 })).toThrow(DeviceStateError);
    expect(() => Virtqueue.fromState(mem, { ...s, maxSize: 100 })).toThrow(DeviceStateError);
    // A queue that is not ready may hold any size the driver wrote so far.
    expect(Virtqueue.fromState(mem, { ...s, ready: false, size: 24 }).size).toBe(24);
  });
});

describe('popChain / addUsed', () => {
  it('pops chains in order and publishes used elements', () => {
    const { mq, q, mem } = setup();
    const h1 = mq.addChain([{ addr: 0x20000, len: 16, writable: false }, { addr: 0x21000, len: 512, writable: true }]);
    const h2 = mq.addChain([{ addr: 0x22000, len: 4, writable: false }]);
    const c1 = q.popChain()!;
    expect(c1.head).toBe(h1);
    expect(c1.collect()).toEqual([{ addr: 0x20000, len: 16, writable: false }, { addr: 0x21000, len: 512, writable: true }]);
    expect(q.popChain()!.head).toBe(h2);
    expect(q.popChain()).toBeNull();
    q.addUsed(h2, 0);
    q.addUsed(h1, 513);
    expect(mq.usedIdx()).toBe(2);
    expect(mq.usedElem(0)).toEqual({ id: h2, len: 0 });
    expect(mq.usedElem(1)).toEqual({ id: h1, len: 513 });
    expect(mem.readU16(mq.used + 2)).toBe(2);
  });

  it('handles the 16-bit index wrap', () => {
    const { mq, q } = setup(4);
    q.nextAvail = 0xfffe;
    q.nextUsed = 0xfffe;
    mq.availIdx = 0xfffe;
    for (let i = 0; i < 3; i++) mq.addChain([{ addr: 0x20000, len: 1, writable: true }]);
    let n = 0;
    for (let c = q.popChain(); c !== null; c = q.popChain()) { q.addUsed(c.head, 1); n++; }
    expect(n).toBe(3);
    expect(q.nextAvail).toBe(1);
    expect(mq.usedIdx()).toBe(1);
  });

  it('refuses an avail index that jumps past the queue size', () => {
    const { mq, q } = setup(8);
    mq.setAvailIdx(9);
    expect(() => q.popChain()).toThrow(/ahead/);
    mq.setAvailIdx(8); // exactly a full ring is legal
    expect(q.popChain()).not.toBeNull();
  });

  it('refuses a head index outside the queue', () => {
    const { mq, q } = setup(8);
    mq.publish(8);
    expect(() => q.popChain()).toThrow(/outside the queue/);
  });
});

describe('DescriptorChain validation', () => {
  it('ends a descriptor loop with the TTL', () => {
    const { mq, q } = setup(8);
    mq.writeDesc(0, 0x20000, 1, VIRTQ_DESC_F_NEXT, 1);
    mq.writeDesc(1, 0x20000, 1, VIRTQ_DESC_F_NEXT, 0);
    mq.publish(0);
    expect(() => q.popChain()!.collect()).toThrow(/loop/);
  });

  it('refuses a chain longer than the queue and a next index out of range', () => {
    const { mq, q } = setup(4);
    for (let i = 0; i < 4; i++) mq.writeDesc(i, 0x20000, 1, VIRTQ_DESC_F_NEXT, i + 1);
    mq.publish(0);
    expect(() => q.popChain()!.collect()).toThrow(VirtqueueError);
  });

  it('refuses buffers outside RAM, and address overflow', () => {
    const { mq, q, mem } = setup(8);
    mq.addChain([{ addr: RAM - 4, len: 8, writable: true }]);
    expect(() => q.popChain()!.collect()).toThrow(/not inside guest RAM/);
    const head = mq.buildChain([{ addr: 0, len: 8, writable: false }]);
    mem.writeU64(mq.desc + 16 * head, 0xffff_ffff_ffff_fff0n);
    mq.publish(head);
    expect(() => q.popChain()!.collect()).toThrow(/not inside guest RAM/);
  });

  it('exposes direction per descriptor', () => {
    const { mq, q } = setup();
    mq.addChain([{ addr: 0x20000, len: 16, writable: false }, { addr: 0x20010, len: 1, writable: true }]);
    expect(q.popChain()!.collect().map((d) => d.writable)).toEqual([false, true]);
  });

  it('walks one level of indirect descriptors when negotiated', () => {
    const { mq, q } = setup(8, { indirect: true });
    const bufs = [{ addr: 0x20000, len: 16, writable: false }, { addr: 0x21000, len: 1024, writable: true }, { addr: 0x22000, len: 1, writable: true }];
    mq.publish(mq.buildIndirect(bufs, 0x30000));
    expect(q.popChain()!.collect()).toEqual(bufs);
  });

  it('rejects indirect abuse: not negotiated, nested, bad length, outside RAM, with NEXT, looping', () => {
    const cases: Array<[string, (mq: MockQueue) => number]> = [
      ['nested', (mq) => {
        mq.writeDesc(0, 0x31000, 16, VIRTQ_DESC_F_INDIRECT, 0, 0x30000);
        mq.writeDesc(0, 0x20000, 1, 0, 0, 0x31000);
        const h = mq.buildChain([{ addr: 0, len: 0, writable: false }]);
        mq.writeDesc(h, 0x30000, 16, VIRTQ_DESC_F_INDIRECT, 0);
        return h;
      }],
      ['length', (mq) => { const h = mq.buildChain([{ addr: 0x30000, len: 24, writable: false }]); mq.writeDesc(h, 0x30000, 24, VIRTQ_DESC_F_INDIRECT, 0); return h; }],
      ['zero length', (mq) => { const h = mq.buildChain([{ addr: 0x30000, len: 0, writable: false }]); mq.writeDesc(h, 0x30000, 0, VIRTQ_DESC_F_INDIRECT, 0); return h; }],
      ['outside RAM', (mq) => { const h = mq.buildChain([{ addr: 0, len: 0, writable: false }]); mq.writeDesc(h, RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0); return h; }],
      ['with NEXT', (mq) => { const h = mq.buildChain([{ addr: 0, len: 0, writable: false }]); mq.writeDesc(h, 0x30000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1); return h; }],
      ['loop inside the table', (mq) => {
        mq.writeDesc(0, 0x20000, 1, VIRTQ_DESC_F_NEXT, 1, 0x30000);
        mq.writeDesc(1, 0x20000, 1, VIRTQ_DESC_F_NEXT, 0, 0x30000);
        const h = mq.buildChain([{ addr: 0, len: 0, writable: false }]);
        mq.writeDesc(h, 0x30000, 32, VIRTQ_DESC_F_INDIRECT, 0);
        return h;
      }],
      ['index beyond the table', (mq) => {
        mq.writeDesc(0, 0x20000, 1, VIRTQ_DESC_F_NEXT, 5, 0x30000);
        const h = mq.buildChain([{ addr: 0, len: 0, writable: false }]);
        mq.writeDesc(h, 0x30000, 16, VIRTQ_DESC_F_INDIRECT, 0);
        return h;
      }],
    ];
    for (const [name, build] of cases) {
      const { mq, q } = setup(8, { indirect: true });
      mq.publish(build(mq));
      expect(() => q.popChain()!.collect(), name).toThrow(VirtqueueError);
    }
    const { mq, q } = setup(8, { indirect: false });
    mq.publish(mq.buildIndirect([{ addr: 0x20000, len: 1, writable: true }], 0x30000));
    expect(() => q.popChain()!.collect()).toThrow(/not negotiated/);
  });
});

describe('notifications', () => {
  it('honours VIRTQ_AVAIL_F_NO_INTERRUPT without EVENT_IDX', () => {
    const { mq, q } = setup();
    expect(q.needsNotification()).toBe(true);
    mq.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    expect(q.needsNotification()).toBe(false);
  });

  it('suppresses interrupts with EVENT_IDX until used_event is crossed', () => {
    const { mq, q } = setup(16, { eventIdx: true });
    const use = () => q.addUsed(0, 0);
    use();
    expect(q.needsNotification()).toBe(true); // first one always
    mq.setUsedEvent(3); // "interrupt me when used idx passes 3" i.e. when entry 3 is used (idx becomes 4)
    use(); // idx 2
    expect(q.needsNotification()).toBe(false);
    use(); // idx 3
    expect(q.needsNotification()).toBe(false);
    use(); // idx 4: crossed
    expect(q.needsNotification()).toBe(true);
    use(); use(); // idx 6, used_event still 3: already signalled past it
    expect(q.needsNotification()).toBe(false);
    mq.setUsedEvent(6);
    use(); // idx 7 crosses 6
    expect(q.needsNotification()).toBe(true);
  });

  it('publishes avail_event and reports late arrivals', () => {
    const { mq, q } = setup(16, { eventIdx: true });
    mq.addChain([{ addr: 0x20000, len: 1, writable: true }]);
    q.popChain();
    expect(q.enableNotification()).toBe(false);
    expect(mq.availEvent()).toBe(1);
    mq.addChain([{ addr: 0x20000, len: 1, writable: true }]);
    expect(q.enableNotification()).toBe(true);
  });
});

describe('Virtqueue state of a queue still being configured', () => {
  it('keeps arbitrary driver-written values and still refuses them at validation', () => {
    const { mem, q } = setup();
    q.ready = false;
    q.size = 0xffff_ffff;
    q.descTable = 0xffff_ffff * 2 ** 32 + 0xffff_f000;
    const back = Virtqueue.fromState(mem, JSON.parse(JSON.stringify(q.state())));
    expect(back.size).toBe(0xffff_ffff);
    expect(() => back.validate()).toThrow(VirtqueueError);
    back.size = 16;
    expect(() => back.validate()).toThrow(/beyond any guest RAM/);
  });
});
