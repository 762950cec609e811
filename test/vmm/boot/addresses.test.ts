import { describe, expect, it } from 'vitest';
import {
  BOOT_AREAS, EBDA_START, HIGH_MEMORY_START, MPTABLE_ADDR, PVH_START_INFO_SIZE, RSDP_ADDR, assertDisjoint,
} from '../../../src/vmm/boot/addresses.js';
import { BootLayoutError } from '../../../src/vmm/boot/errors.js';
import { HVM_START_INFO_SIZE } from '../../../src/vmm/boot/pvh.js';
import { buildMpTable } from '../../../src/vmm/boot/mptable.js';

describe('boot address map', () => {
  it('has no two areas overlapping and all below 1 MiB', () => {
    expect(() => assertDisjoint(BOOT_AREAS)).not.toThrow();
    const sorted = [...BOOT_AREAS].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      expect(sorted[i - 1]!.start + sorted[i - 1]!.size, `${sorted[i - 1]!.name} vs ${sorted[i]!.name}`).toBeLessThanOrEqual(sorted[i]!.start);
    }
    for (const a of BOOT_AREAS) expect(a.start + a.size).toBeLessThanOrEqual(HIGH_MEMORY_START);
  });

  it('keeps the MP table, ACPI, the VM generation ID and the reset vector inside the reserved EBDA/BIOS window, everything else below it', () => {
    expect(MPTABLE_ADDR).toBe(0x9fc00);
    expect(RSDP_ADDR).toBe(0xe0000);
    for (const a of BOOT_AREAS) {
      const inWindow = a.start >= EBDA_START;
      expect(inWindow || a.start + a.size <= EBDA_START, a.name).toBe(true);
      expect(['mptable', 'acpi', 'vmgenid', 'reset-vector'].includes(a.name)).toBe(inWindow);
    }
  });

  it('reserves enough room for what is written there', () => {
    expect(PVH_START_INFO_SIZE).toBeGreaterThanOrEqual(HVM_START_INFO_SIZE);
    const mptable = BOOT_AREAS.find((a) => a.name === 'mptable')!;
    expect(buildMpTable({ vcpus: 254, extraGsis: [16, 17, 18, 19, 20, 21, 22, 23] }).length).toBeLessThanOrEqual(mptable.size);
  });

  it('detects overlaps and areas that leave low memory', () => {
    expect(() => assertDisjoint([{ name: 'a', start: 0x1000, size: 0x1000 }, { name: 'b', start: 0x1fff, size: 2 }])).toThrow(BootLayoutError);
    expect(() => assertDisjoint([{ name: 'a', start: 0xff000, size: 0x2000 }])).toThrow(/outside/);
    expect(() => assertDisjoint([{ name: 'a', start: 0x1000, size: 0x1000 }, { name: 'b', start: 0x2000, size: 1 }])).not.toThrow();
  });
});
