import { describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/snapshot/errors.js';
import { snapshotUrlToPath } from '../../src/snapshot/url.js';

describe('snapshotUrlToPath', () => {
  it('maps file URLs to absolute paths', () => {
    expect(snapshotUrlToPath('file:///var/snap/a')).toBe('/var/snap/a');
    expect(snapshotUrlToPath('file:///var/snap/a/')).toBe('/var/snap/a');
    expect(snapshotUrlToPath('file://localhost/var/snap')).toBe('/var/snap');
    expect(snapshotUrlToPath('file:///tmp/with%20space')).toBe('/tmp/with space');
  });

  it('refuses other schemes, hosts and non-URLs with the form that works', () => {
    expect(() => snapshotUrlToPath('http://example.com/x')).toThrow(/scheme "http" is not supported.*file:\/\/\//);
    expect(() => snapshotUrlToPath('s3://bucket/x')).toThrow(SnapshotError);
    expect(() => snapshotUrlToPath('/var/snap')).toThrow(/is not a URL/);
    expect(() => snapshotUrlToPath('file://snap/dir')).toThrow(/names host "snap".*file:\/\/\/snap\/dir/);
    expect(() => snapshotUrlToPath('file:///x?y=1')).toThrow(/query or fragment/);
    expect(() => snapshotUrlToPath('file:///')).toThrow(/root directory/);
    expect(() => snapshotUrlToPath('')).toThrow(/non-empty string/);
    expect(() => snapshotUrlToPath(undefined)).toThrow(SnapshotError);
  });
});
