import { SnapshotError } from './errors.js';

/**
 * Encoders between in-memory state (bigints, byte arrays) and the JSON in vm.json. Binary blobs
 * are base64; 64-bit numbers are "0x…" hex strings, because JSON numbers are doubles and lose
 * bits above 2^53. Decoders check their input strictly: vm.json is read from disk and may be
 * damaged or hand-edited, so every bad value becomes a SnapshotError naming the field.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const HEX_U64 = /^0x[0-9a-fA-F]{1,16}$/;
/** What toJsonSafe produces for a bigint; fromJsonSafe turns every such string back into one. */
const HEX_BIGINT = /^-?0x[0-9a-fA-F]+$/;
const U64_MAX = (1n << 64n) - 1n;

function fieldName(what: string | undefined): string {
  return what === undefined ? 'value' : what;
}

export function encodeBytes(bytes: Uint8Array): string {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('encodeBytes: expected a Uint8Array');
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * Strict base64 (standard alphabet, padded): Buffer.from(…, 'base64') alone silently skips bad
 * characters, which would turn a damaged field into wrong register contents.
 */
export function decodeBytes(text: unknown, expectedLength?: number, what?: string): Uint8Array {
  if (typeof text !== 'string') {
    throw new SnapshotError(`${fieldName(what)} must be a base64 string, got ${describeType(text)}`, { field: what });
  }
  if (!BASE64.test(text)) {
    throw new SnapshotError(`${fieldName(what)} is not valid base64 (length ${text.length})`, { field: what });
  }
  const bytes = new Uint8Array(Buffer.from(text, 'base64'));
  if (expectedLength !== undefined && bytes.byteLength !== expectedLength) {
    throw new SnapshotError(`${fieldName(what)} decodes to ${bytes.byteLength} bytes, expected ${expectedLength}`, { field: what });
  }
  return bytes;
}

export function encodeU64(value: bigint): string {
  if (typeof value !== 'bigint') throw new TypeError(`encodeU64: expected a bigint, got ${describeType(value)}`);
  if (value < 0n || value > U64_MAX) throw new RangeError(`encodeU64: ${value} is outside 0..2^64-1`);
  return `0x${value.toString(16)}`;
}

export function decodeU64(text: unknown, what?: string): bigint {
  if (typeof text !== 'string' || !HEX_U64.test(text)) {
    const shown = typeof text === 'string' ? JSON.stringify(text.slice(0, 40)) : describeType(text);
    throw new SnapshotError(`${fieldName(what)} must be a 64-bit hex string like "0x1f", got ${shown}`, { field: what });
  }
  return BigInt(text);
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** An object {"base64": "…"} and nothing else is how toJsonSafe spells a Uint8Array. */
function isBytesWrapper(v: object): v is { base64: string } {
  const keys = Object.keys(v);
  return keys.length === 1 && keys[0] === 'base64' && typeof (v as { base64?: unknown }).base64 === 'string';
}

/**
 * Turns a state object (e.g. a decoded KVM struct) into JSON data: bigint → "0x…" (negative:
 * "-0x…"), Uint8Array → {"base64": "…"}; plain objects, arrays, finite numbers, strings,
 * booleans and null pass through; undefined object properties are dropped (as JSON.stringify
 * does). fromJsonSafe is its exact inverse, which is why values that would read back as
 * something else are refused: a string that looks like "0x…", or a plain object shaped like
 * {"base64": string}. Anything else (NaN, functions, Maps, other typed arrays, cycles) is a
 * TypeError naming the path, since it is a bug in the code producing the state.
 */
export function toJsonSafe(value: unknown, path = '$'): JsonValue {
  return toSafe(value, path, new Set());
}

function toSafe(value: unknown, path: string, seen: Set<object>): JsonValue {
  switch (typeof value) {
    case 'bigint':
      return value < 0n ? `-0x${(-value).toString(16)}` : `0x${value.toString(16)}`;
    case 'string':
      if (HEX_BIGINT.test(value)) {
        throw new TypeError(`toJsonSafe: string at ${path} (${value}) would read back as a bigint; store it as a bigint`);
      }
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`toJsonSafe: ${value} at ${path} is not representable in JSON`);
      return value;
    case 'boolean':
      return value;
    case 'object': {
      if (value === null) return null;
      if (value instanceof Uint8Array) return { base64: encodeBytes(value) };
      if (ArrayBuffer.isView(value)) {
        throw new TypeError(`toJsonSafe: ${value.constructor.name} at ${path}; convert it to a Uint8Array`);
      }
      if (seen.has(value)) throw new TypeError(`toJsonSafe: cycle at ${path}`);
      seen.add(value);
      try {
        if (Array.isArray(value)) {
          return value.map((item, i) => {
            if (item === undefined) throw new TypeError(`toJsonSafe: undefined at ${path}[${i}]`);
            return toSafe(item, `${path}[${i}]`, seen);
          });
        }
        if (!isPlainObject(value)) {
          throw new TypeError(`toJsonSafe: ${value.constructor?.name ?? 'object'} at ${path} is not a plain object`);
        }
        if (isBytesWrapper(value)) {
          throw new TypeError(`toJsonSafe: object at ${path} is shaped like an encoded byte array {"base64": …}`);
        }
        const out: JsonObject = {};
        for (const [k, v] of Object.entries(value)) {
          if (v === undefined) continue;
          out[k] = toSafe(v, `${path}.${k}`, seen);
        }
        return out;
      } finally {
        seen.delete(value);
      }
    }
    default:
      throw new TypeError(`toJsonSafe: ${typeof value} at ${path} is not representable in JSON`);
  }
}

/** Inverse of toJsonSafe; malformed encodings are SnapshotErrors naming the path. */
export function fromJsonSafe(value: unknown, path = '$'): unknown {
  if (typeof value === 'string') {
    if (!HEX_BIGINT.test(value)) return value;
    return value.startsWith('-') ? -BigInt(value.slice(1)) : BigInt(value);
  }
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'number' || typeof value === 'boolean' || value === null) return value;
    throw new SnapshotError(`${path}: ${typeof value} is not a JSON value`, { field: path });
  }
  if (Array.isArray(value)) return value.map((item, i) => fromJsonSafe(item, `${path}[${i}]`));
  if (isBytesWrapper(value)) return decodeBytes(value.base64, undefined, `${path}.base64`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = fromJsonSafe(v, `${path}.${k}`);
  return out;
}

/**
 * JSON with object keys sorted at every level and no whitespace: the byte string the vm.json
 * checksum covers, so re-indenting the file or reordering keys does not break it.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value);
    if (s === undefined) throw new TypeError(`canonicalJson: ${typeof value} is not a JSON value`);
    return s;
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`;
  const keys = Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
}

/**
 * Checks that `value` is already plain JSON data (what JSON.parse could return): finite numbers,
 * plain objects and arrays, no bigints, byte arrays, undefined array items or cycles. The writer
 * runs it over the opaque state it is handed, so what it checksums is exactly what a reader parses.
 */
export function assertJsonValue(value: unknown, path: string): asserts value is JsonValue {
  checkJson(value, path, new Set());
}

function checkJson(value: unknown, path: string, seen: Set<object>): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`${path}: ${value} is not representable in JSON`);
    return;
  }
  if (typeof value !== 'object') {
    const hint = typeof value === 'bigint' ? ' (use encodeU64 or toJsonSafe)' : '';
    throw new TypeError(`${path}: ${typeof value} is not a JSON value${hint}`);
  }
  if (ArrayBuffer.isView(value)) throw new TypeError(`${path}: ${value.constructor.name} is not a JSON value (use encodeBytes or toJsonSafe)`);
  if (seen.has(value)) throw new TypeError(`${path}: cycle`);
  seen.add(value);
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      if (item === undefined) throw new TypeError(`${path}[${i}]: undefined is not a JSON value`);
      checkJson(item, `${path}[${i}]`, seen);
    });
  } else {
    if (!isPlainObject(value)) throw new TypeError(`${path}: ${value.constructor?.name ?? 'object'} is not a plain object`);
    for (const [k, v] of Object.entries(value)) if (v !== undefined) checkJson(v, `${path}.${k}`, seen);
  }
  seen.delete(value);
}
