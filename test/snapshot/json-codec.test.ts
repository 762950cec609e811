import { describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/snapshot/errors.js';
import {
  assertJsonValue, canonicalJson, decodeBytes, decodeU64, encodeBytes, encodeU64, fromJsonSafe, toJsonSafe,
} from '../../src/snapshot/json-codec.js';

describe('bytes and u64 codecs', () => {
  it('round-trips bytes, including views into a larger buffer', () => {
    const backing = new Uint8Array([9, 1, 2, 3, 255, 9]);
    const view = backing.subarray(1, 5);
    expect(encodeBytes(view)).toBe('AQID/w==');
    expect([...decodeBytes('AQID/w==', 4)]).toEqual([1, 2, 3, 255]);
    expect(decodeBytes('').length).toBe(0);
  });

  it('refuses malformed base64 and wrong lengths, naming the field', () => {
    expect(() => decodeBytes('AQI*', undefined, 'vcpus[0].xsave')).toThrow(/vcpus\[0\]\.xsave is not valid base64/);
    expect(() => decodeBytes('AQI', undefined, 'f')).toThrow(SnapshotError);
    expect(() => decodeBytes(42, undefined, 'f')).toThrow(/f must be a base64 string, got number/);
    expect(() => decodeBytes('AQID', 4, 'lapic')).toThrow(/lapic decodes to 3 bytes, expected 4/);
  });

  it('round-trips u64 at the edges and refuses bad input', () => {
    const max = (1n << 64n) - 1n;
    for (const v of [0n, 1n, 0xdeadbeefn, max]) expect(decodeU64(encodeU64(v))).toBe(v);
    expect(encodeU64(255n)).toBe('0xff');
    expect(() => encodeU64(-1n)).toThrow(RangeError);
    expect(() => encodeU64(max + 1n)).toThrow(RangeError);
    expect(() => decodeU64('0x', 'tsc')).toThrow(/tsc must be a 64-bit hex string/);
    expect(() => decodeU64('0x10000000000000000', 'tsc')).toThrow(SnapshotError);
    expect(() => decodeU64('12', 'tsc')).toThrow(SnapshotError);
    expect(() => decodeU64(12, 'tsc')).toThrow(/got number/);
  });
});

describe('toJsonSafe / fromJsonSafe', () => {
  it('is an exact round trip for KVM-struct-like values', () => {
    const value = {
      rip: 0xffff_ffff_8100_0000n, neg: -5n, n: 3, flag: true, none: null, name: 'cpu0',
      xsave: new Uint8Array([1, 2, 3]), msrs: [{ index: 0x10, data: 1n << 63n }],
    };
    const json = toJsonSafe(value);
    expect(json).toMatchObject({ rip: '0xffffffff81000000', neg: '-0x5', xsave: { base64: 'AQID' } });
    const back = JSON.parse(JSON.stringify(json)) as unknown;
    expect(fromJsonSafe(back)).toEqual(value);
  });

  it('refuses values that would not read back as themselves', () => {
    expect(() => toJsonSafe({ s: '0x10' })).toThrow(/would read back as a bigint/);
    expect(() => toJsonSafe({ b: { base64: 'AA==' } })).toThrow(/shaped like an encoded byte array/);
    expect(() => toJsonSafe({ x: Number.NaN })).toThrow(/\$\.x/);
    expect(() => toJsonSafe({ a: new Uint32Array(2) })).toThrow(/Uint32Array/);
    expect(() => toJsonSafe({ m: new Map() })).toThrow(/not a plain object/);
    expect(() => toJsonSafe([undefined])).toThrow(/undefined/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => toJsonSafe(cyclic)).toThrow(/cycle/);
  });

  it('reports malformed encodings as SnapshotError with the path', () => {
    expect(() => fromJsonSafe({ lapic: { base64: '@@@@' } })).toThrow(/\$\.lapic\.base64 is not valid base64/);
  });
});

describe('canonicalJson and assertJsonValue', () => {
  it('sorts keys at every level and ignores formatting', () => {
    expect(canonicalJson({ b: [1, { z: 1, a: 2 }], a: 'x' })).toBe('{"a":"x","b":[1,{"a":2,"z":1}]}');
    expect(canonicalJson(JSON.parse('{ "b" : 1,\n "a": 2 }'))).toBe(canonicalJson({ a: 2, b: 1 }));
  });

  it('refuses non-JSON data with the path', () => {
    expect(() => assertJsonValue({ a: [1, 2n] }, 'vm')).toThrow(/vm\.a\[1\]: bigint/);
    expect(() => assertJsonValue({ a: new Uint8Array(1) }, 'vm')).toThrow(/encodeBytes/);
    expect(() => assertJsonValue({ a: Infinity }, 'vm')).toThrow(/Infinity/);
    expect(() => assertJsonValue({ a: [1, { b: 'c' }] }, 'vm')).not.toThrow();
  });
});
