import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory } from '../../../src/memory/guest-memory.js';
import { composeCommandLine, encodeCommandLine, virtioMmioParams, writeCommandLine } from '../../../src/vmm/boot/cmdline.js';
import { CommandLineError } from '../../../src/vmm/boot/errors.js';

describe('kernel command line', () => {
  it('formats virtio-mmio devices like QEMU microvm', () => {
    expect(virtioMmioParams([{ base: 0xd0000000, size: 0x1000, gsi: 5 }, { base: 0xfeb00e00, size: 512, gsi: 12 }]))
      .toEqual(['virtio_mmio.device=4K@0xd0000000:5', 'virtio_mmio.device=512@0xfeb00e00:12']);
    expect(composeCommandLine('  ', [{ base: 0xd0000000, size: 0x1000, gsi: 5 }], true)).toBe('virtio_mmio.device=4K@0xd0000000:5');
    expect(composeCommandLine('quiet', [{ base: 0xd0000000, size: 0x1000, gsi: 5 }], false)).toBe('quiet');
  });

  it('writes NUL-terminated and enforces the limit exactly', () => {
    const mem = anonymousGuestMemory([{ guestBase: 0, size: 0x10000 }]);
    mem.fill(0x2000, 16, 0xff);
    expect(writeCommandLine(mem, 0x2000, 'abcd', 4)).toBe(4);
    expect([...mem.read(0x2000, 6)]).toEqual([0x61, 0x62, 0x63, 0x64, 0, 0xff]);
    expect(() => encodeCommandLine('abcde', 4)).toThrow(CommandLineError);
    expect(() => encodeCommandLine('a\0b', 10)).toThrow(/NUL/);
    // The limit counts bytes, not characters.
    expect(() => encodeCommandLine('é'.repeat(3), 5)).toThrow(/6 bytes/);
  });
});
