/**
 * Identity page tables for the 64-bit entry: the boot protocol needs the kernel, zero page and
 * command line identity-mapped. One PML4 entry → one PDPT → PD_COUNT page directories of 2 MiB
 * pages covers [0, PD_COUNT GiB), i.e. all of RAM below the 32-bit hole and the hole itself.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { PD_ADDR, PD_COUNT, PDPT_ADDR, PML4_ADDR } from './addresses.js';

const PRESENT = 1n;
const WRITABLE = 2n;
const PAGE_SIZE_2M = 0x80n;
export const IDENTITY_MAPPED_BYTES = PD_COUNT * 0x4000_0000;

/** Writes the tables and returns CR3. */
export function writeIdentityPageTables(memory: GuestMemory): bigint {
  const pml4 = new DataView(new ArrayBuffer(0x1000));
  pml4.setBigUint64(0, BigInt(PDPT_ADDR) | PRESENT | WRITABLE, true);
  const pdpt = new DataView(new ArrayBuffer(0x1000));
  for (let i = 0; i < PD_COUNT; i++) {
    pdpt.setBigUint64(i * 8, BigInt(PD_ADDR + i * 0x1000) | PRESENT | WRITABLE, true);
    const pd = new DataView(new ArrayBuffer(0x1000));
    for (let j = 0; j < 512; j++) {
      const phys = BigInt(i) * 0x4000_0000n + BigInt(j) * 0x20_0000n;
      pd.setBigUint64(j * 8, phys | PRESENT | WRITABLE | PAGE_SIZE_2M, true);
    }
    memory.write(PD_ADDR + i * 0x1000, new Uint8Array(pd.buffer));
  }
  memory.write(PML4_ADDR, new Uint8Array(pml4.buffer));
  memory.write(PDPT_ADDR, new Uint8Array(pdpt.buffer));
  return BigInt(PML4_ADDR);
}

/**
 * Walks the tables in guest memory like the MMU would (4-level, 2 MiB or 1 GiB leaves) and returns
 * the physical address, or undefined when unmapped. Used by tests and by anyone checking a layout.
 */
export function translate(memory: GuestMemory, cr3: bigint, va: bigint): bigint | undefined {
  const mask = 0x000f_ffff_ffff_f000n;
  const idx = (shift: bigint): number => Number((va >> shift) & 0x1ffn);
  const pml4e = memory.readU64(Number(cr3 & mask) + idx(39n) * 8);
  if ((pml4e & PRESENT) === 0n) return undefined;
  const pdpte = memory.readU64(Number(pml4e & mask) + idx(30n) * 8);
  if ((pdpte & PRESENT) === 0n) return undefined;
  if ((pdpte & PAGE_SIZE_2M) !== 0n) return (pdpte & 0x000f_ffff_c000_0000n) | (va & 0x3fff_ffffn);
  const pde = memory.readU64(Number(pdpte & mask) + idx(21n) * 8);
  if ((pde & PRESENT) === 0n) return undefined;
  if ((pde & PAGE_SIZE_2M) !== 0n) return (pde & 0x000f_ffff_ffe0_0000n) | (va & 0x1f_ffffn);
  const pte = memory.readU64(Number(pde & mask) + idx(12n) * 8);
  if ((pte & PRESENT) === 0n) return undefined;
  return (pte & mask) | (va & 0xfffn);
}
