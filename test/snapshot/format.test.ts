import { describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/snapshot/errors.js';
import { FORMAT_VERSION, checkFormatVersion, documentChecksum } from '../../src/snapshot/format.js';

describe('format version policy', () => {
  it('accepts its own version and older minors of its major', () => {
    expect(checkFormatVersion('1.0')).toEqual({ major: 1, minor: 0 });
    const newerReader = { major: 1, minor: 3 };
    expect(checkFormatVersion('1.0', newerReader)).toEqual({ major: 1, minor: 0 });
    expect(checkFormatVersion('1.2', newerReader)).toEqual({ major: 1, minor: 2 });
  });

  it('refuses newer majors, newer minors, older majors and malformed versions', () => {
    expect(() => checkFormatVersion('2.0')).toThrow('snapshot format 2.0 is newer than this tsvmm understands (1.x); upgrade tsvmm');
    expect(() => checkFormatVersion('1.4', { major: 1, minor: 3 })).toThrow(/1\.4 is newer than this tsvmm understands \(up to 1\.3\)/);
    expect(() => checkFormatVersion('0.9')).toThrow(/0\.9 is older than this tsvmm supports \(1\.x\)/);
    for (const bad of ['1', '1.0.0', 'v1.0', '01.0', 1.0, null, undefined]) {
      expect(() => checkFormatVersion(bad)).toThrow(SnapshotError);
    }
    expect(FORMAT_VERSION).toEqual({ major: 1, minor: 0 });
  });
});

describe('documentChecksum', () => {
  it('ignores the checksum field and key order, and sees every other change', () => {
    const a = documentChecksum({ a: 1, b: { c: [1, 2] }, checksum: 'x' });
    expect(documentChecksum({ b: { c: [1, 2] }, a: 1 })).toBe(a);
    expect(documentChecksum({ a: 1, b: { c: [2, 1] } })).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });
});
