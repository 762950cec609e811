import { ENTRY64_OFFSET, chooseLoadAddress, isBzImage, kernelFootprint, loadBzImage, parseBzImage } from './bzimage.js';
import { isElf, loadElf, parseElf } from './elf.js';
import { KernelFormatError } from './errors.js';
export function parseKernel(image) {
    if (image.length < 64)
        throw new KernelFormatError(`kernel image is ${image.length} bytes: empty or truncated`);
    if (isElf(image))
        return parseElf(image);
    if (isBzImage(image))
        return parseBzImage(image);
    throw new KernelFormatError('kernel image is neither an ELF vmlinux nor a bzImage (no ELF magic, no "HdrS" at 0x202)');
}
export function loadKernel(memory, image, lowRamEnd) {
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
//# sourceMappingURL=kernel.js.map