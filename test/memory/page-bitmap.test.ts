import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, PageBitmap } from '../../src/memory/page-bitmap.js';
import { anonymousGuestMemory } from '../../src/memory/guest-memory.js';

const runsOf = (b: PageBitmap, max?: number): Array<[number, number]> => [...b.runs(max)];

describe('PageBitmap', () => {
  it('marks every page a byte range touches, and nothing else', () => {
    const b = new PageBitmap(64 * PAGE_SIZE);
    b.setRange(PAGE_SIZE - 1, 2); // straddles pages 0 and 1
    b.setRange(10 * PAGE_SIZE, 1);
    b.setRange(31 * PAGE_SIZE, 3 * PAGE_SIZE); // crosses a 32-bit word
    expect([...Array(64).keys()].filter((p) => b.has(p))).toEqual([0, 1, 10, 31, 32, 33]);
    expect(b.count()).toBe(6);
    expect(runsOf(b)).toEqual([[0, 2 * PAGE_SIZE], [10 * PAGE_SIZE, PAGE_SIZE], [31 * PAGE_SIZE, 3 * PAGE_SIZE]]);
  });

  it('refuses ranges outside the region and sizes that are not whole pages', () => {
    const b = new PageBitmap(4 * PAGE_SIZE);
    expect(() => b.setRange(3 * PAGE_SIZE, PAGE_SIZE + 1)).toThrow(RangeError);
    expect(() => b.setRange(-1, 1)).toThrow(RangeError);
    expect(() => new PageBitmap(PAGE_SIZE + 1)).toThrow(RangeError);
  });

  it('runs split at the size asked for, and a full bitmap is one run per split', () => {
    const b = PageBitmap.full(100 * PAGE_SIZE);
    expect(b.count()).toBe(100);
    expect(runsOf(b)).toEqual([[0, 100 * PAGE_SIZE]]);
    expect(runsOf(b, 40 * PAGE_SIZE)).toEqual([[0, 40 * PAGE_SIZE], [40 * PAGE_SIZE, 40 * PAGE_SIZE], [80 * PAGE_SIZE, 20 * PAGE_SIZE]]);
  });

  it('merges a KVM dirty log (little-endian u64 words) and another bitmap', () => {
    const b = new PageBitmap(130 * PAGE_SIZE);
    expect(b.kvmBytes).toBe(24); // 130 pages → 3 u64 words, as KVM sizes it
    const kvm = new Uint8Array(24);
    kvm[0] = 0b101; // pages 0 and 2
    kvm[8 + 4] = 0x80; // page 64 + 39
    kvm[16] = 0b10; // page 129
    b.orKvm(kvm);
    const other = new PageBitmap(130 * PAGE_SIZE);
    other.setRange(5 * PAGE_SIZE, PAGE_SIZE);
    b.or(other);
    expect([...Array(130).keys()].filter((p) => b.has(p))).toEqual([0, 2, 5, 103, 129]);
    expect(() => b.orKvm(new Uint8Array(16))).toThrow(RangeError);
    expect(() => b.or(new PageBitmap(PAGE_SIZE))).toThrow(RangeError);
  });
});

describe('GuestMemory dirty log: the pages the VMM itself writes', () => {
  const layout = [{ guestBase: 0, size: 16 * PAGE_SIZE }, { guestBase: 0x100000, size: 8 * PAGE_SIZE }];
  const pages = (b: PageBitmap): number[] => [...Array(b.pages).keys()].filter((p) => b.has(p));

  it('records write, fill, the typed stores and markDirty; reads record nothing; take starts afresh', () => {
    const m = anonymousGuestMemory(layout);
    m.write(0, new Uint8Array(8)); // recorded only while a log runs
    m.startDirtyLog();
    m.write(PAGE_SIZE + 10, new Uint8Array(PAGE_SIZE)); // pages 1 and 2
    m.fill(5 * PAGE_SIZE, 1);
    m.writeU16(7 * PAGE_SIZE - 1, 0xffff); // straddles 6 and 7
    m.writeU32(0x100000 + 3 * PAGE_SIZE, 1);
    m.writeU64(9 * PAGE_SIZE, 1n);
    m.writeU8(11 * PAGE_SIZE, 1);
    m.markDirty(0x100000 + 7 * PAGE_SIZE, 1);
    m.read(13 * PAGE_SIZE, 100);
    m.readU64(14 * PAGE_SIZE);
    void m.slice(15 * PAGE_SIZE, 8);
    const [low, high] = m.takeDirty();
    expect(pages(low!)).toEqual([1, 2, 5, 6, 7, 9, 11]);
    expect(pages(high!)).toEqual([3, 7]);
    const [again] = m.takeDirty();
    expect(again!.count()).toBe(0);
    m.stopDirtyLog();
    expect(() => m.takeDirty()).toThrow(/no dirty log/);
  });

  it('markDirty of a range outside guest RAM fails like any other guest access', () => {
    const m = anonymousGuestMemory(layout);
    m.startDirtyLog();
    expect(() => m.markDirty(16 * PAGE_SIZE, 1)).toThrow(/not inside guest RAM/);
  });
});
