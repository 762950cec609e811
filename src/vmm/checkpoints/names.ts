import { basename, extname } from 'node:path';

/** "/d/vm.S1.qcow2" → "vm.S1": a file's name without its folder and last extension. */
export function stemOf(path: string): string {
  return basename(path, extname(path));
}
