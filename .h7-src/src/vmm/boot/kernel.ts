/**
 * Kernel image detection by magic, and loading into guest RAM. The result says which entry points
 * the image offers; index.ts picks the boot protocol from it.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { ENTRY64_OFFSET, chooseLoadAddress, isBzImage, kernelFootprint, loadBzImage, parseBzImage, type BzImage } from './bzimage.js';
import { isElf, loadElf, parseElf, type ElfKernel } from './elf.js';
import { KernelFormatError } from './errors.js';

export type ParsedKernel = ElfKernel | BzImage;

export function parseKernel(image: Uint8Array): ParsedKernel {
  if (image.length < 64) throw new KernelFormatError(`kernel image is ${image.length} bytes: empty or truncated`);
  if (isElf(image)) return parseElf(image);
  if (isBzImage(image)) return parseBzImage(image);
  throw new KernelFormatError('kernel image is neither an ELF vmlinux nor a bzImage (no ELF magic, no "HdrS" at 0x202)');
}

export interface LoadedKernel {
  readonly kernel: ParsedKernel;
  /** Entry for the 64-bit Linux boot protocol (zero page in RSI), when the image has one. */
  readonly entry64: number | undefined;
  /** Entry for PVH (32-bit protected mode, EBX = hvm_start_info), when the image has one. */
  readonly pvhEntry: number | undefined;
  readonly kernelStart: number;
  /** First byte past everything the kernel occupies (for a bzImage, including init_size). */
  readonly kernelEnd: number;
}

export function loadKernel(memory: GuestMemory, image: Uint8Array, lowRamEnd: number): LoadedKernel {
  const kernel = parseKernel(image);
  if (kernel.format === 'bzimage') {
    const at = chooseLoadAddress(kernel, lowRamEnd);
    loadBzImage(memory, kernel, at);
    return { kernel, entry64: at + ENTRY64_OFFSET, pvhEntry: undefined, kernelStart: at, kernelEnd: at + kernelFootprint(kernel) };
  }
  if (kernel.pvhEntry === undefined && kernel.elfClass === 32) {
    throw new KernelFormatError('32-bit ELF kernel has no Xen PVH entry note; only PVH can boot an ELF32 image');
  }
  loadElf(memory, image, kernel);
  return {
    kernel,
    entry64: kernel.elfClass === 64 ? kernel.entry : undefined,
    pvhEntry: kernel.pvhEntry,
    kernelStart: kernel.loadStart,
    kernelEnd: kernel.loadEnd,
  };
}
