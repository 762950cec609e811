import { accessSync, constants } from 'node:fs';

/**
 * Global set-up of the `kvm` project: its tests start guests, so without /dev/kvm the run fails
 * here, once, with what to do, rather than skipping (a skip would pass silently). `npm test` runs
 * this project nested under QEMU when the host has no /dev/kvm.
 */
export default function requireKvm(): void {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'cannot be opened read-write';
    throw new Error(
      `the kvm test project needs /dev/kvm, which ${why} here: run it with \`npm test\` ` +
        '(it runs these tests nested under QEMU when the host has no KVM)',
    );
  }
}
