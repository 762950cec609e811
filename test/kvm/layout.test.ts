import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { KVM_CAPS, KVM_CONSTANTS, KVM_EXIT, KVM_IOCTLS } from '../../src/kvm/ioctls.js';
import { KVM_MAX_XCRS, OFFSETS, RUN_DATA_WORDS, SIZES } from '../../src/kvm/structs.js';

/**
 * Compiles native-shims/kvm_layout.c against this machine's <linux/kvm.h> and checks every number
 * src/kvm hard-codes, in both directions: each TS entry matches the header, and each header entry
 * the shim prints has a TS counterpart (so neither side can silently drop one).
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const outDir = join(root, 'native-shims', 'out');
const binary = join(outDir, 'kvm_layout');

type Table = Record<string, number>;
interface Layout { ioctls: Table; caps: Table; exits: Table; constants: Table; sizes: Table; offsets: Table; lengths: Table }

function buildAndRun(): Layout {
  mkdirSync(outDir, { recursive: true });
  execFileSync('gcc', ['-Wall', '-Werror', '-O0', '-o', binary, join(root, 'native-shims', 'kvm_layout.c')], { stdio: 'pipe' });
  return JSON.parse(execFileSync(binary, { encoding: 'utf8' })) as Layout;
}

function compare(name: string, ts: Readonly<Record<string, number>>, c: Table): void {
  const mismatches: string[] = [];
  for (const [k, v] of Object.entries(ts)) {
    if (!(k in c)) mismatches.push(`${name}.${k}: not printed by kvm_layout.c`);
    else if (c[k] !== v) mismatches.push(`${name}.${k}: TS ${v} (0x${v.toString(16)}), <linux/kvm.h> ${c[k]} (0x${c[k]!.toString(16)})`);
  }
  for (const k of Object.keys(c)) if (!(k in ts)) mismatches.push(`${name}.${k}: in kvm_layout.c but not in src/kvm`);
  expect(mismatches).toEqual([]);
}

describe('src/kvm numbers match <linux/kvm.h>', () => {
  const layout = buildAndRun();

  it('ioctl numbers', () => compare('ioctls', KVM_IOCTLS, layout.ioctls));
  it('capability numbers', () => compare('caps', KVM_CAPS, layout.caps));
  it('exit reasons', () => compare('exits', KVM_EXIT, layout.exits));
  it('constants', () => compare('constants', KVM_CONSTANTS, layout.constants));
  it('struct sizes', () => compare('sizes', SIZES, layout.sizes));
  it('member offsets', () => compare('offsets', OFFSETS, layout.offsets));
  it('array lengths', () =>
    compare('lengths', {
      'kvm_run.internal.data': RUN_DATA_WORDS,
      'kvm_run.system_event.data': RUN_DATA_WORDS,
      'kvm_xcrs.xcrs': KVM_MAX_XCRS,
      'kvm_sregs.interrupt_bitmap': 4,
    }, layout.lengths));
  it('checks a meaningful number of entries', () => {
    expect(Object.keys(layout.ioctls).length).toBeGreaterThan(40);
    expect(Object.keys(layout.offsets).length).toBeGreaterThan(100);
  });
});
