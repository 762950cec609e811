import { describe, expect, it } from 'vitest';
import { VMGENID_SIZE, VmGenId } from '../../src/devices/acpi/vmgenid.js';
import { anonymousGuestMemory } from '../../src/memory/guest-memory.js';

const ADDR = 0xf0000;

function setup() {
  const memory = anonymousGuestMemory([{ guestBase: 0, size: 1 << 20 }]);
  const line = { gsi: 22, triggers: 0, trigger() { this.triggers++; } };
  return { memory, line };
}

describe('VMGenID', () => {
  it('a new VM gets a random 16-byte ID in guest memory, without a notification', () => {
    const { memory, line } = setup();
    const a = VmGenId.create(memory, line, ADDR);
    const b = VmGenId.create(setup().memory, line, ADDR);
    expect(a.id()).toHaveLength(VMGENID_SIZE);
    expect([...memory.read(ADDR, VMGENID_SIZE)]).toEqual([...a.id()]);
    expect(a.id().some((x) => x !== 0)).toBe(true);
    expect([...a.id()]).not.toEqual([...b.id()]);
    expect(line.triggers).toBe(0);
    expect(memory.read(ADDR + VMGENID_SIZE, 16).every((x) => x === 0)).toBe(true); // writes nothing past the ID
  });

  it('every restore writes a new ID, then raises the interrupt', () => {
    const { memory, line } = setup();
    const state = VmGenId.create(memory, line, ADDR).state();
    expect(state).toEqual({ address: ADDR, gsi: 22 });
    const seen = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const before = Buffer.from(memory.read(ADDR, VMGENID_SIZE)).toString('hex');
      const restored = VmGenId.fromState(memory, line, JSON.parse(JSON.stringify(state)));
      restored.announceRestore();
      const after = Buffer.from(restored.id()).toString('hex');
      expect(after).not.toBe(before);
      seen.add(after);
      expect(line.triggers).toBe(i + 1);
    }
    expect(seen.size).toBe(3);
  });

  it('refuses saved state that does not fit this VM, naming what is wrong', () => {
    const { memory, line } = setup();
    expect(() => VmGenId.fromState(memory, line, { address: ADDR, gsi: 23 })).toThrow(/told of interrupt 23; this tsvmm raises 22/);
    expect(() => VmGenId.fromState(memory, line, { address: ADDR + 4, gsi: 22 })).toThrow(/not an 8-byte aligned/);
    expect(() => VmGenId.fromState(memory, line, { address: -8, gsi: 22 })).toThrow(/not an 8-byte aligned/);
    expect(() => VmGenId.fromState(memory, line, { address: 'x' as unknown as number, gsi: 22 })).toThrow(/not an 8-byte aligned/);
    expect(() => VmGenId.fromState(memory, line, { address: 4 << 20, gsi: 22 })).toThrow(/not in guest RAM/);
    expect(() => VmGenId.fromState(memory, line, { address: ADDR, gsi: 22 })).not.toThrow();
  });
});
