import { describe, expect, it } from 'vitest';
import { chooseLoadAddress, parseBzImage } from '../../../src/vmm/boot/bzimage.js';
import { BootLayoutError, KernelFormatError } from '../../../src/vmm/boot/errors.js';
import { parseKernel } from '../../../src/vmm/boot/kernel.js';
import { makeBzImage } from './fixtures.js';

describe('bzImage setup header', () => {
  it('parses the fields the loader uses', () => {
    const bz = parseBzImage(makeBzImage({ version: 0x20f, setupSects: 4, payloadSize: 0x4000, initSize: 0x30000, cmdlineSize: 2047 }));
    expect(bz.header.version).toBe(0x20f);
    expect(bz.header.setupSects).toBe(4);
    expect(bz.header.xloadflags & 1).toBe(1);
    expect(bz.header.cmdlineSize).toBe(2047);
    expect(bz.header.prefAddress).toBe(0x1000000);
    expect(bz.header.initSize).toBe(0x30000);
    expect(bz.header.relocatable).toBe(true);
    expect(bz.payload.length).toBe(0x4000);
    expect(bz.payload[0]).toBe(0x5a);
    // The copied header stops at 0x202 + byte[0x201]; the setup code after it is not included.
    expect(bz.headerBytes.length).toBe(0x26c - 0x1f1);
  });

  it('treats setup_sects 0 as 4', () => {
    const bz = parseBzImage(makeBzImage({ setupSects: 0 }));
    expect(bz.header.setupSects).toBe(4);
    expect(bz.payload.length).toBe(0x4000);
  });

  it('rejects a boot protocol older than 2.06', () => {
    expect(() => parseBzImage(makeBzImage({ version: 0x205 }))).toThrow(/2\.05.*2\.06/);
  });

  it('rejects an image without XLF_KERNEL_64', () => {
    expect(() => parseBzImage(makeBzImage({ xloadflags: 0 }))).toThrow(/XLF_KERNEL_64/);
  });

  it('rejects a zImage', () => {
    expect(() => parseBzImage(makeBzImage({ loadflags: 0 }))).toThrow(/zImage/);
  });

  it('rejects truncated images', () => {
    const img = makeBzImage();
    expect(() => parseBzImage(img.subarray(0, img.length - 16))).toThrow(/truncated/);
    expect(() => parseBzImage(img.subarray(0, 0x250))).toThrow(/truncated/);
    expect(() => parseBzImage(img.subarray(0, 5 * 512))).toThrow(KernelFormatError);
  });

  it('rejects garbage with a typed error', () => {
    const garbage = new Uint8Array(8192).map((_, i) => (i * 7919) & 0xff);
    expect(() => parseKernel(garbage)).toThrow(KernelFormatError);
    expect(() => parseKernel(new Uint8Array(10))).toThrow(/truncated/);
    try { parseKernel(garbage); } catch (e) { expect((e as KernelFormatError).code).toBe('EKERNELFORMAT'); }
  });

  it('loads at pref_address when relocatable and it fits, else at code32_start', () => {
    const bz = parseBzImage(makeBzImage({ initSize: 0x100000 }));
    expect(chooseLoadAddress(bz, 128 << 20)).toBe(0x1000000);
    expect(chooseLoadAddress(bz, 0x1080000)).toBe(0x100000);
    const fixed = parseBzImage(makeBzImage({ relocatable: false, initSize: 0x100000 }));
    expect(chooseLoadAddress(fixed, 128 << 20)).toBe(0x100000);
    expect(() => chooseLoadAddress(fixed, 0x180000)).toThrow(BootLayoutError);
  });
});
