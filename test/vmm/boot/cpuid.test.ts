import { describe, expect, it } from 'vitest';
import type { KvmCpuidEntry2 } from '../../../src/kvm/types.js';
import { bitsFor, cpuVendor, cpuidForVcpu, cpuidPerVcpu } from '../../../src/vmm/boot/cpuid.js';
import { bootXcr0 } from '../../../src/vmm/boot/cpu.js';
import { fakeSupportedCpuid } from './fixtures.js';

const leaf = (l: KvmCpuidEntry2[], fn: number, index = 0): KvmCpuidEntry2 => {
  const e = l.find((x) => x.function === fn && x.index === index);
  if (e === undefined) throw new Error(`no leaf 0x${fn.toString(16)}.${index}`);
  return e;
};

describe('CPUID patching', () => {
  it('reads the vendor', () => {
    expect(cpuVendor(fakeSupportedCpuid('GenuineIntel'))).toBe('intel');
    expect(cpuVendor(fakeSupportedCpuid('AuthenticAMD'))).toBe('amd');
    expect(cpuVendor([])).toBe('other');
    expect(bitsFor(1)).toBe(0);
    expect(bitsFor(2)).toBe(1);
    expect(bitsFor(3)).toBe(2);
  });

  it('sets APIC id, logical count, HTT and the hypervisor bit per vCPU (Intel, 2 vCPUs)', () => {
    const input = fakeSupportedCpuid('GenuineIntel');
    const before = JSON.stringify(input);
    const all = cpuidPerVcpu(input, 2);
    expect(JSON.stringify(input)).toBe(before); // pure
    all.forEach((l, id) => {
      const l1 = leaf(l, 1);
      expect(l1.ebx >>> 24).toBe(id);
      expect((l1.ebx >>> 16) & 0xff).toBe(2);
      expect((l1.ebx >>> 8) & 0xff).toBe(8);
      expect(l1.ecx >>> 31).toBe(1);
      expect((l1.edx >>> 28) & 1).toBe(1);
      for (const fn of [0xb, 0x1f]) {
        expect(leaf(l, fn, 0)).toMatchObject({ eax: 0, ebx: 1, ecx: 0x100, edx: id });
        expect(leaf(l, fn, 1)).toMatchObject({ eax: 1, ebx: 2, ecx: 0x201, edx: id });
      }
      expect(leaf(l, 0xb, 2)).toMatchObject({ eax: 0, ebx: 0, ecx: 2, edx: id });
      // Leaf 4: cores per package - 1 in [31:26]; L1/L2 private, L3 shared by both.
      for (let i = 0; i < 4; i++) expect(leaf(l, 4, i).eax >>> 26).toBe(1);
      expect((leaf(l, 4, 0).eax >>> 14) & 0xfff).toBe(0);
      expect((leaf(l, 4, 3).eax >>> 14) & 0xfff).toBe(1);
      expect(leaf(l, 4, 0).eax & 0x3fff).toBe(0x121);
      expect(leaf(l, 4, 4).eax).toBe(0);
      // KVM leaves untouched.
      expect(leaf(l, 0x40000000)).toEqual(leaf(input, 0x40000000));
      expect(leaf(l, 0x40000001)).toEqual(leaf(input, 0x40000001));
      // AMD-only leaves untouched on Intel.
      expect(leaf(l, 0x80000008)).toEqual(leaf(input, 0x80000008));
    });
  });

  it('clears HTT for a single vCPU', () => {
    const l = cpuidForVcpu(fakeSupportedCpuid('GenuineIntel'), 0, 1);
    expect((leaf(l, 1).edx >>> 28) & 1).toBe(0);
    expect((leaf(l, 1).ebx >>> 16) & 0xff).toBe(1);
    expect(leaf(l, 4, 0).eax >>> 26).toBe(0);
  });

  it('patches the AMD core-count leaves (3 vCPUs)', () => {
    const input = fakeSupportedCpuid('AuthenticAMD');
    const l = cpuidForVcpu(input, 2, 3);
    expect(leaf(l, 0x80000008).ecx & 0xff).toBe(2);
    expect((leaf(l, 0x80000008).ecx >>> 12) & 0xf).toBe(2);
    expect(leaf(l, 0x8000001e)).toMatchObject({ eax: 2, ebx: 2, ecx: 0 });
    expect((leaf(l, 0x80000001).ecx >>> 1) & 1).toBe(1);
    // Intel's leaf 4 is left alone on AMD.
    expect(leaf(l, 4, 0)).toEqual(leaf(input, 4, 0));
    expect(leaf(l, 1).ebx >>> 24).toBe(2);
  });

  it('rejects an index outside the vCPU count', () => {
    expect(() => cpuidForVcpu(fakeSupportedCpuid('GenuineIntel'), 2, 2)).toThrow(RangeError);
  });
});

describe('bootXcr0: the XCR0 a vCPU starts with is what an OS that enables XSAVE will set', () => {
  const entry = (fn: number, regs: Partial<KvmCpuidEntry2>, index = 0): KvmCpuidEntry2 =>
    ({ function: fn, index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...regs });
  const XSAVE = 1 << 26;
  const AVX = 1 << 28;
  const PKU = 1 << 3;
  const AVX512F = 1 << 16;

  it('x87, SSE and the components whose CPUID flags are set (the nested test host: 0x207)', () => {
    expect(bootXcr0([entry(1, { ecx: XSAVE | AVX }), entry(7, { ecx: PKU }), entry(0xd, { eax: 0x207 })])).toBe(0x207n);
    expect(bootXcr0([entry(1, { ecx: XSAVE | AVX }), entry(7, { ebx: AVX512F }), entry(0xd, { eax: 0xe7 })])).toBe(0xe7n);
  });

  it('leaves out what the CPUID flags do not offer, MPX, and AMX (needs permission)', () => {
    expect(bootXcr0([entry(1, { ecx: XSAVE }), entry(7, {}), entry(0xd, { eax: 0x207 })])).toBe(0x3n);
    expect(bootXcr0([entry(1, { ecx: XSAVE | AVX }), entry(7, {}), entry(0xd, { eax: 0x6001f })])).toBe(0x7n);
  });

  it('the reset value 1 without XSAVE or leaf 0xD', () => {
    expect(bootXcr0([entry(1, { ecx: AVX }), entry(0xd, { eax: 0x7 })])).toBe(1n);
    expect(bootXcr0([entry(1, { ecx: XSAVE | AVX })])).toBe(1n);
  });
});
