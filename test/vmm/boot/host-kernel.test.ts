/**
 * Parses a real distribution kernel: Debian's stock bzImage, which `npm run guest` fetches
 * (guest-images/linux/debian-kernel.sh), or the file named by TSVMM_TEST_KERNEL, and the vmlinux
 * inside it. A missing kernel fails the test with what to run; it never skips it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { anonymousGuestMemory } from '../../../src/memory/guest-memory.js';
import { ramLayout } from '../../../src/memory/layout.js';
import { ZERO_PAGE_ADDR } from '../../../src/vmm/boot/addresses.js';
import { parseBzImage } from '../../../src/vmm/boot/bzimage.js';
import { layoutGuest } from '../../../src/vmm/boot/index.js';
import { parseKernel } from '../../../src/vmm/boot/kernel.js';
import { BP } from '../../../src/vmm/boot/zero-page.js';
import { fakeSupportedCpuid } from './fixtures.js';
import { repoRoot } from '../../support/tsvmm-process.js';

const kernelPath = process.env['TSVMM_TEST_KERNEL'] ?? join(repoRoot, 'guest-images', 'out', 'debian', 'vmlinuz');
if (!existsSync(kernelPath)) throw new Error(`${kernelPath} is missing: run \`npm run guest\` (or set TSVMM_TEST_KERNEL)`);

describe(`host kernel ${kernelPath}`, () => {
  it('parses as a 64-bit bzImage with a modern boot protocol', () => {
    const image = new Uint8Array(readFileSync(kernelPath));
    const k = parseKernel(image);
    expect(k.format).toBe('bzimage');
    const bz = parseBzImage(image);
    expect(bz.header.version).toBeGreaterThanOrEqual(0x20c);
    expect(bz.header.xloadflags & 1).toBe(1);
    expect(bz.header.initSize).toBeGreaterThan(bz.payload.length);
    expect(bz.header.cmdlineSize).toBeGreaterThanOrEqual(255);
  });

  it('lays out a 512 MiB guest around it', () => {
    const image = new Uint8Array(readFileSync(kernelPath));
    const memory = anonymousGuestMemory(ramLayout(512 << 20));
    const r = layoutGuest({
      kernel: image, cmdline: 'console=ttyS0', memory, vcpus: 2,
      virtioDevices: [{ base: 0xd0000000, size: 0x1000, gsi: 5 }], supportedCpuid: fakeSupportedCpuid('AuthenticAMD'),
    });
    expect(r.bootProtocol).toBe('linux64');
    expect(r.kernelStart % 0x200000).toBe(0);
    expect(memory.readU32(ZERO_PAGE_ADDR + BP.header)).toBe(0x53726448);
    expect(memory.readU64(ZERO_PAGE_ADDR + BP.acpiRsdpAddr)).toBe(0xe0000n);
  });
});

/** The same kernel uncompressed (guest-images/linux/build.sh extracts it), or TSVMM_TEST_VMLINUX. */
const vmlinuxPath = process.env['TSVMM_TEST_VMLINUX'] ?? join(repoRoot, 'guest-images', 'out', 'linux', 'vmlinux');
if (!existsSync(vmlinuxPath)) throw new Error(`${vmlinuxPath} is missing: run \`npm run guest\` (or set TSVMM_TEST_VMLINUX)`);

describe(`vmlinux ${vmlinuxPath}`, () => {
  it('finds the PVH entry note and the physical startup_64', () => {
    const k = parseKernel(new Uint8Array(readFileSync(vmlinuxPath)));
    expect(k.format).toBe('elf');
    if (k.format !== 'elf') return;
    expect(k.elfClass).toBe(64);
    expect(k.pvhEntry).toBeGreaterThan(k.loadStart);
    expect(k.entry).toBe(k.loadStart);
  });
});
