/** Where the initramfs goes: as high as the kernel allows in low RAM, page-aligned, above the kernel. */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { BootLayoutError } from './errors.js';

const PAGE = 0x1000;

export interface InitramfsPlacement {
  readonly addr: number;
  readonly size: number;
}

/**
 * `maxAddr` is the highest byte the image may occupy (boot.rst's initrd_addr_max, inclusive);
 * `lowRamEnd` the end of RAM contiguous from 0; `kernelEnd` the first byte past the kernel.
 */
export function placeInitramfs(size: number, kernelEnd: number, lowRamEnd: number, maxAddr: number): InitramfsPlacement {
  const top = Math.min(lowRamEnd, maxAddr + 1);
  const addr = Math.floor((top - size) / PAGE) * PAGE;
  const floor = Math.ceil(kernelEnd / PAGE) * PAGE;
  if (size <= 0 || addr < floor) {
    throw new BootLayoutError(
      `initramfs of ${size} bytes does not fit between the kernel end 0x${floor.toString(16)} and 0x${top.toString(16)}; give the VM more memory`,
      { size, kernelEnd, top },
    );
  }
  return { addr, size };
}

export function loadInitramfs(memory: GuestMemory, image: Uint8Array, kernelEnd: number, lowRamEnd: number, maxAddr: number): InitramfsPlacement {
  const p = placeInitramfs(image.length, kernelEnd, lowRamEnd, maxAddr);
  memory.write(p.addr, image);
  return p;
}
