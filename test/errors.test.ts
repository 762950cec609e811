import { readFileSync, readdirSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, errorCodesMarkdown, httpStatusForCode } from '../src/error-codes.js';

const ROOT = resolve(import.meta.dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('error codes', () => {
  it('lists every code the source can raise (any quoted E-code that is not an errno name)', () => {
    const errnoNames = new Set(Object.keys(constants.errno));
    const used = new Set<string>();
    for (const file of sources(join(ROOT, 'src'))) {
      for (const m of readFileSync(file, 'utf8').matchAll(/'(E[A-Z0-9]{2,})'/g)) if (!errnoNames.has(m[1]!)) used.add(m[1]!);
    }
    expect([...used].filter((c) => !(c in ERROR_CODES)).sort()).toEqual([]);
  });

  it('gives every code a status the API can send, or none for client-side codes', () => {
    for (const [code, e] of Object.entries(ERROR_CODES)) {
      expect(e.status === null || (e.status >= 400 && e.status < 600), code).toBe(true);
      expect(httpStatusForCode(code)).toBe(e.status ?? 500);
    }
    expect(httpStatusForCode('EINVALIDSTATE')).toBe(400);
    expect(httpStatusForCode('ENOVM')).toBe(404);
  });

  it('docs/errors.md holds the table as generated (node tools/gen-error-docs.mjs)', () => {
    expect(readFileSync(join(ROOT, 'docs/errors.md'), 'utf8')).toContain(errorCodesMarkdown());
  });
});
