/**
 * What a guest finds at the real-mode reset vector (F000:FFF0, physical 0xffff0) when it jumps
 * there to reboot. tsvmm has no firmware, so without this the area is zeros.
 *
 * Linux reaches it on every reboot of a tsvmm guest: our FADT says hardware-reduced ACPI, which
 * makes Linux prefer an EFI reset (reboot_init: efi_reboot_required), and without EFI it falls
 * through to BOOT_BIOS, machine_real_restart(): real mode, then `ljmp $0xf000,$0xfff0`. A BIOS
 * would reset the machine from there; so do these seven bytes, through the i8042's reset command (the
 * same reset `reboot=k` asks for), so `reboot` ends the VM as a reset (exit status 120) instead of
 * spinning through zeroed memory forever with the guest's console cut mid-line.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { RESET_VECTOR_ADDR } from './addresses.js';

/** i8042 command port and its "pulse reset line" command (devices/i8042.ts handles it). */
const I8042_COMMAND_PORT = 0x64;
const I8042_RESET_COMMAND = 0xfe;

/** 16-bit code: mov al, 0xfe; out 0x64, al; 1: hlt; jmp 1b. */
export const RESET_VECTOR_CODE = Uint8Array.from([
  0xb0, I8042_RESET_COMMAND, // mov al, 0xfe
  0xe6, I8042_COMMAND_PORT, // out 0x64, al
  0xf4, // hlt
  0xeb, 0xfd, // jmp back to the hlt
]);

export function writeResetVector(memory: GuestMemory): void {
  memory.write(RESET_VECTOR_ADDR, RESET_VECTOR_CODE);
}
