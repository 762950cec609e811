/**
 * Per-vCPU CPUID from the host's KVM_GET_SUPPORTED_CPUID list. The topology we present: one
 * socket, `vcpus` cores, one thread per core, APIC id = vCPU index. Pure: the input is not changed.
 */
import type { KvmCpuidEntry2 } from '../../kvm/types.js';

export type CpuVendor = 'intel' | 'amd' | 'other';

const LEAF1_ECX_HYPERVISOR = 1 << 31;
const LEAF1_EDX_HTT = 1 << 28;
const AMD_EXT1_ECX_CMP_LEGACY = 1 << 1;
const LEVEL_TYPE_SMT = 1;
const LEVEL_TYPE_CORE = 2;

function regString(...regs: number[]): string {
  const b = new Uint8Array(regs.length * 4);
  const dv = new DataView(b.buffer);
  regs.forEach((r, i) => dv.setUint32(i * 4, r >>> 0, true));
  return String.fromCharCode(...b);
}

export function cpuVendor(entries: readonly KvmCpuidEntry2[]): CpuVendor {
  const leaf0 = entries.find((e) => e.function === 0);
  if (leaf0 === undefined) return 'other';
  const v = regString(leaf0.ebx, leaf0.edx, leaf0.ecx);
  if (v === 'GenuineIntel') return 'intel';
  if (v === 'AuthenticAMD' || v === 'HygonGenuine') return 'amd';
  return 'other';
}

/** Bits needed to number `n` things: ceil(log2(n)). */
export function bitsFor(n: number): number {
  let b = 0;
  while (1 << b < n) b++;
  return b;
}

/** The x2APIC topology sub-leaves (0xB / 0x1F): SMT level, core level, then the invalid terminator. */
function topologyLeaf(e: KvmCpuidEntry2, apicId: number, vcpus: number): KvmCpuidEntry2 {
  const edx = apicId;
  switch (e.index) {
    case 0: return { ...e, eax: 0, ebx: 1, ecx: (LEVEL_TYPE_SMT << 8) | 0, edx };
    case 1: return { ...e, eax: bitsFor(vcpus), ebx: vcpus, ecx: (LEVEL_TYPE_CORE << 8) | 1, edx };
    default: return { ...e, eax: 0, ebx: 0, ecx: e.index & 0xff, edx };
  }
}

function patchEntry(e: KvmCpuidEntry2, vendor: CpuVendor, apicId: number, vcpus: number): KvmCpuidEntry2 {
  switch (e.function) {
    case 0x1: {
      // EBX: [31:24] initial APIC id, [23:16] logical processors per package, [15:8] CLFLUSH size.
      const clflush = (e.ebx >>> 8) & 0xff || 8;
      const ebx = ((apicId & 0xff) << 24) | ((vcpus & 0xff) << 16) | (clflush << 8) | (e.ebx & 0xff);
      const edx = vcpus > 1 ? e.edx | LEAF1_EDX_HTT : e.edx & ~LEAF1_EDX_HTT;
      return { ...e, ebx: ebx >>> 0, ecx: (e.ecx | LEAF1_ECX_HYPERVISOR) >>> 0, edx: edx >>> 0 };
    }
    case 0x4: {
      if (vendor !== 'intel' || (e.eax & 0x1f) === 0) return { ...e };
      // EAX[31:26] cores per package - 1; EAX[25:14] threads sharing this cache - 1 (the
      // package for L3, one core — a single thread — for L1/L2).
      const level = (e.eax >>> 5) & 0x7;
      const sharing = level >= 3 ? vcpus - 1 : 0;
      const eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((vcpus - 1) & 0x3f) << 26);
      return { ...e, eax: eax >>> 0 };
    }
    case 0xb:
    case 0x1f:
      return topologyLeaf(e, apicId, vcpus);
    case 0x8000_0001:
      if (vendor !== 'amd') return { ...e };
      return { ...e, ecx: (vcpus > 1 ? e.ecx | AMD_EXT1_ECX_CMP_LEGACY : e.ecx & ~AMD_EXT1_ECX_CMP_LEGACY) >>> 0 };
    case 0x8000_0008: {
      if (vendor !== 'amd') return { ...e };
      // ECX[15:12] ApicIdCoreIdSize, ECX[7:0] NC = cores - 1.
      const ecx = (e.ecx & ~0xf0ff) | (bitsFor(vcpus) << 12) | ((vcpus - 1) & 0xff);
      return { ...e, ecx: ecx >>> 0 };
    }
    case 0x8000_001e:
      if (vendor !== 'amd') return { ...e };
      // EAX extended APIC id; EBX[7:0] core (compute unit) id, [15:8] threads per core - 1;
      // ECX[10:8] nodes per package - 1, [7:0] node id.
      return { ...e, eax: apicId >>> 0, ebx: apicId & 0xff, ecx: 0, edx: 0 };
    default:
      return { ...e };
  }
}

/** CPUID for vCPU `index` of `vcpus`. KVM's own leaves (0x40000000+) pass through unchanged. */
export function cpuidForVcpu(supported: readonly KvmCpuidEntry2[], index: number, vcpus: number): KvmCpuidEntry2[] {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 255 || !Number.isInteger(index) || index < 0 || index >= vcpus) {
    throw new RangeError(`vCPU ${index} of ${vcpus} is outside 0..254`);
  }
  const vendor = cpuVendor(supported);
  return supported.map((e) => patchEntry(e, vendor, index, vcpus));
}

export function cpuidPerVcpu(supported: readonly KvmCpuidEntry2[], vcpus: number): KvmCpuidEntry2[][] {
  return Array.from({ length: vcpus }, (_, i) => cpuidForVcpu(supported, i, vcpus));
}
