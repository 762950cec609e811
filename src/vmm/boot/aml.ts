/**
 * A tiny AML (ACPI Machine Language) encoder: just the terms a DSDT describing fixed devices
 * needs — Scope, Device, Name, integers, strings, EISA ids, packages, resource-template buffers,
 * and the one method the generic event device has (Method, If, LEqual, Arg0, Notify).
 * Each function returns the encoded bytes; nesting is by composition.
 */
const SCOPE_OP = 0x10;
const NAME_OP = 0x08;
const BUFFER_OP = 0x11;
const EXT_OP_PREFIX = 0x5b;
const DEVICE_OP = 0x82;
const ROOT_PREFIX = 0x5c;
const DUAL_NAME_PREFIX = 0x2e;
const METHOD_OP = 0x14;
const NOTIFY_OP = 0x86;
const IF_OP = 0xa0;
const LEQUAL_OP = 0x93;
const ARG0_OP = 0x68;

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/**
 * PkgLength: counts itself plus the `contentLength` bytes after it. One byte up to 63; otherwise
 * bits 7:6 of the lead byte say how many bytes follow, its low nibble holds bits 3:0.
 */
export function pkgLength(contentLength: number): Uint8Array {
  if (contentLength + 1 < 0x40) return Uint8Array.of(contentLength + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = contentLength + 1 + extra;
    if (total < 1 << (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0xf);
      for (let i = 1; i <= extra; i++) out[i] = (total >> (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new RangeError(`AML package of ${contentLength} bytes is too large`);
}

/** A NameSeg: 1–4 characters [A-Z_][A-Z0-9_]*, padded with '_'. */
function nameSeg(seg: string): Uint8Array {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg)) throw new RangeError(`invalid AML name segment "${seg}"`);
  return new TextEncoder().encode(seg.padEnd(4, '_'));
}

/** "\\_SB_" or "\\_SB_.PWRB" (rooted, one or two segments) or "DEV0" (relative, single segment). */
export function nameString(name: string): Uint8Array {
  if (!name.startsWith('\\')) return nameSeg(name);
  const segs = name.slice(1).split('.');
  if (segs.length === 1) return concat([Uint8Array.of(ROOT_PREFIX), nameSeg(segs[0]!)]);
  if (segs.length === 2) return concat([Uint8Array.of(ROOT_PREFIX, DUAL_NAME_PREFIX), nameSeg(segs[0]!), nameSeg(segs[1]!)]);
  throw new RangeError(`AML name "${name}": at most two segments here`);
}

export function integer(v: number): Uint8Array {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new RangeError(`AML integer ${v} out of range`);
  if (v === 0) return Uint8Array.of(0x00);
  if (v === 1) return Uint8Array.of(0x01);
  if (v <= 0xff) return Uint8Array.of(0x0a, v);
  if (v <= 0xffff) return Uint8Array.of(0x0b, v & 0xff, v >> 8);
  const out = new Uint8Array(5);
  out[0] = 0x0c;
  new DataView(out.buffer).setUint32(1, v, true);
  return out;
}

/** Package(){...}: PackageOp, PkgLength, NumElements, the elements (at most 255). */
export function pkg(elements: readonly Uint8Array[]): Uint8Array {
  if (elements.length > 255) throw new RangeError(`AML package of ${elements.length} elements`);
  const content = concat([Uint8Array.of(elements.length), ...elements]);
  return concat([Uint8Array.of(0x12), pkgLength(content.length), content]);
}

export function string(s: string): Uint8Array {
  if (!/^[\x01-\x7f]*$/.test(s)) throw new RangeError('AML strings are 7-bit ASCII without NUL');
  return concat([Uint8Array.of(0x0d), new TextEncoder().encode(s), Uint8Array.of(0)]);
}

/** EisaId("PNP0501"): three letters compressed to 5 bits each, then four hex digits. */
export function eisaId(id: string): Uint8Array {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new RangeError(`invalid EISA id "${id}"`);
  const c = (i: number): number => id.charCodeAt(i) - 0x40;
  const vendor = (c(0) << 10) | (c(1) << 5) | c(2);
  const product = parseInt(id.slice(3), 16);
  const value = ((vendor >> 8) | ((vendor & 0xff) << 8) | ((product >> 8) << 16) | ((product & 0xff) << 24)) >>> 0;
  return integer(value);
}

export function name(n: string, value: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(NAME_OP), nameString(n), value]);
}

export function scope(n: string, children: readonly Uint8Array[]): Uint8Array {
  const body = concat([nameString(n), ...children]);
  return concat([Uint8Array.of(SCOPE_OP), pkgLength(body.length), body]);
}

export function device(n: string, children: readonly Uint8Array[]): Uint8Array {
  const body = concat([nameString(n), ...children]);
  return concat([Uint8Array.of(EXT_OP_PREFIX, DEVICE_OP), pkgLength(body.length), body]);
}

/** Method(name, argCount, Serialized) { body }. */
export function method(n: string, argCount: number, body: readonly Uint8Array[]): Uint8Array {
  if (!Number.isInteger(argCount) || argCount < 0 || argCount > 7) throw new RangeError(`AML method with ${argCount} arguments`);
  const serialized = 0x08;
  const content = concat([nameString(n), Uint8Array.of(argCount | serialized), ...body]);
  return concat([Uint8Array.of(METHOD_OP), pkgLength(content.length), content]);
}

/** Notify(target, value): tells the OS's driver for `target` about event `value`. */
export function notify(target: string, value: number): Uint8Array {
  return concat([Uint8Array.of(NOTIFY_OP), nameString(target), integer(value)]);
}

/** If (LEqual (Arg0, value)) { body }: the event method's test of which interrupt fired. */
export function ifArg0Equals(value: number, body: readonly Uint8Array[]): Uint8Array {
  const content = concat([Uint8Array.of(LEQUAL_OP, ARG0_OP), integer(value), ...body]);
  return concat([Uint8Array.of(IF_OP), pkgLength(content.length), content]);
}

export function buffer(bytes: Uint8Array): Uint8Array {
  const body = concat([integer(bytes.length), bytes]);
  return concat([Uint8Array.of(BUFFER_OP), pkgLength(body.length), body]);
}

/** ResourceTemplate(): the descriptors plus an End Tag whose zero checksum means "not checked". */
export function resourceTemplate(descriptors: readonly Uint8Array[]): Uint8Array {
  return buffer(concat([...descriptors, Uint8Array.of(0x79, 0x00)]));
}

/** Memory32Fixed(ReadWrite, base, length): large item 0x86. */
export function memory32Fixed(base: number, length: number): Uint8Array {
  const out = new Uint8Array(12);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, 0x86);
  dv.setUint16(1, 9, true);
  dv.setUint8(3, 1); // read/write
  dv.setUint32(4, base, true);
  dv.setUint32(8, length, true);
  return out;
}

/** Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) {gsi}: extended interrupt, item 0x89. */
export function extendedInterrupt(gsi: number, opts: { edge: boolean; activeLow: boolean } = { edge: true, activeLow: false }): Uint8Array {
  const out = new Uint8Array(9);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, 0x89);
  dv.setUint16(1, 6, true);
  dv.setUint8(3, 0x01 | (opts.edge ? 0x02 : 0) | (opts.activeLow ? 0x04 : 0));
  dv.setUint8(4, 1);
  dv.setUint32(5, gsi, true);
  return out;
}

/** IO(Decode16, base, base, 1, length): small item 0x47. */
export function ioPort(base: number, length: number): Uint8Array {
  return Uint8Array.of(0x47, 0x01, base & 0xff, base >> 8, base & 0xff, base >> 8, 0x01, length);
}

/** IRQNoFlags() {irq}: small item 0x22 with a 16-bit mask (edge, active high, exclusive). */
export function irqNoFlags(irq: number): Uint8Array {
  const mask = 1 << irq;
  return Uint8Array.of(0x22, mask & 0xff, mask >> 8);
}
