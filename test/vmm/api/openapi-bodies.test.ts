/**
 * docs/openapi.json against the server's validation, for every route that takes a body: the
 * document holds the schemas the server checks (generated from src/vmm/api/schema/bodies.ts), and,
 * reading only the document, bodies it calls valid are accepted while bodies it calls invalid are
 * refused with a 400-class ConfigError naming the field. The bodies are made from the document's
 * schemas: its examples, every field alone at its bounds and each enum value (valid); a wrong
 * type, null where not nullable, a bound crossed, a pattern or format broken, a required field
 * missing, an unknown field (invalid).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { ROUTES } from '../../../src/vmm/api/routes.js';
import type { ActionRoute } from '../../../src/vmm/api/route.js';
import { bodySchemaComponents } from '../../../src/vmm/api/schema/openapi.js';

type S = Record<string, any>; // a schema of the document, as JSON
interface Spec { paths: Record<string, Record<string, S>>; components: { schemas: Record<string, S> } }

const spec = JSON.parse(readFileSync(new URL('../../../docs/openapi.json', import.meta.url), 'utf8')) as Spec;
const clone = <T>(v: T): T => structuredClone(v);

function resolve(s: S): S {
  if (typeof s.$ref !== 'string') return s;
  const target = spec.components.schemas[s.$ref.replace('#/components/schemas/', '')];
  if (target === undefined) throw new Error(`unresolved ${s.$ref}`);
  return target;
}

const isObject = (s: S): boolean => s.type === 'object' && s.additionalProperties === false;

/** Valid values of a schema: bounds and enum values; for an object, its example or its required fields. */
function validValues(ref: S): unknown[] {
  const s = resolve(ref);
  const out: unknown[] = [];
  if (s['x-tsvmm-off-or-default'] === true) return [null];
  if (s.type === 'string') {
    if (s.enum !== undefined) out.push(...s.enum);
    else if (s.pattern !== undefined) out.push(s.example ?? 'a1'); // a pattern 'a1' does not fit (a MAC) comes with an example
    else if (s['x-tsvmm-format'] === 'file-url') out.push('file:///var/lib/tsvmm/snap');
    else {
      const start = s['x-tsvmm-format'] === 'absolute-path' || s['x-tsvmm-format'] === 'path' ? '/' : 'x';
      out.push(`${start}x`);
      if (s.maxLength !== undefined) out.push(start + 'x'.repeat(s.maxLength - 1));
    }
  } else if (s.type === 'integer') {
    const m = s.multipleOf ?? 1;
    const lo = Math.ceil((s.minimum ?? 0) / m) * m;
    out.push(lo, s.maximum === undefined ? lo + m * 1000 : Math.floor(s.maximum / m) * m);
  } else if (s.type === 'boolean') {
    out.push(true, false);
  } else if (s.type === 'array') {
    out.push([validValues(s.items)[0]], []);
  } else if (s.type === 'object' && !isObject(s)) {
    out.push({ key: validValues(s.additionalProperties)[0] }, {});
  } else if (isObject(s)) {
    out.push(baseOf(s));
  }
  if (s.nullable === true) out.push(null);
  return out;
}

function baseOf(s: S): Record<string, unknown> {
  if (s.example !== undefined) return clone(s.example);
  return Object.fromEntries((s.required ?? []).map((k: string) => [k, validValues(s.properties[k])[0]]));
}

/** Applies what the document says a given field needs from its siblings (x-tsvmm-with, x-tsvmm-instead-of). */
function withSiblings(s: S, body: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const field = resolve(s.properties[key]);
  const out = clone(body);
  if (value === null) {
    // null is absent: it needs nothing, and a field valid only with it (mask with ip) goes too.
    for (const [other, o] of Object.entries<S>(s.properties)) if (resolve(o)['x-tsvmm-with']?.[key] !== undefined) delete out[other];
    return { ...out, [key]: null };
  }
  if (field['x-tsvmm-instead-of'] !== undefined) delete out[field['x-tsvmm-instead-of']];
  Object.assign(out, clone(field['x-tsvmm-with'] ?? {}));
  // An enum value another field goes with (mode File goes with file): give that field too.
  for (const [other, o] of Object.entries<S>(s.properties)) {
    const needs = resolve(o)['x-tsvmm-with'];
    if (needs !== undefined && Object.entries(needs).every(([k, v]) => k === key && v === value)) out[other] = validValues(o)[0];
  }
  out[key] = value;
  return out;
}

/** [field path, body] for every field of `s` set alone to each valid value, recursing into objects and array items. */
function* validBodies(s: S, base: Record<string, unknown>, path: string): Generator<[string, unknown]> {
  yield [path || '(example)', base];
  for (const [key, ref] of Object.entries<S>(s.properties)) {
    const field = resolve(ref);
    const at = path === '' ? key : `${path}.${key}`;
    for (const value of validValues(field)) yield [at, withSiblings(s, base, key, value)];
    const inner = isObject(field) ? field : field.type === 'array' && isObject(resolve(field.items)) ? resolve(field.items) : undefined;
    if (inner === undefined) continue;
    const wrap = (v: unknown): unknown => (field.type === 'array' ? [v] : v);
    for (const [p, v] of validBodies(inner, baseOf(inner), field.type === 'array' ? `${at}[0]` : at)) yield [p, withSiblings(s, base, key, wrap(v))];
  }
}

/** Values the document refuses for a schema. */
function invalidValues(ref: S): unknown[] {
  const s = resolve(ref);
  if (s['x-tsvmm-off-or-default'] === true) return [12345, 'on'];
  const out: unknown[] = s.nullable === true ? [] : [null];
  if (s.type === 'string') {
    out.push(12345);
    if (s.enum !== undefined) out.push('NotOneOfThem');
    if (s.minLength !== undefined) out.push('x'.repeat(s.minLength - 1));
    if (s.maxLength !== undefined) out.push('/' + 'x'.repeat(s.maxLength));
    if (s.pattern !== undefined) out.push('-not valid-');
    if (s['x-tsvmm-format'] !== undefined) out.push('/a\u0000b');
    if (s['x-tsvmm-format'] === 'absolute-path') out.push('relative/path');
    if (s['x-tsvmm-format'] === 'file-url') out.push('http://host/snap', '/not/a/url');
  } else if (s.type === 'integer') {
    out.push('1', 1.5);
    if (s.minimum !== undefined) out.push(s.minimum - 1);
    if (s.maximum !== undefined) out.push(s.maximum + 1);
    if ((s.multipleOf ?? 1) > 1) out.push((s.minimum ?? 0) + s.multipleOf + 1);
  } else if (s.type === 'boolean') {
    out.push('yes', 1);
  } else if (s.type === 'array') {
    out.push({}, 'x', [12345]);
  } else if (s.type === 'object') {
    out.push('x', []);
  }
  return out;
}

/** [field path, body] for every way the document says a body is wrong, recursing into objects and array items. */
function* invalidBodies(s: S, base: Record<string, unknown>, path: string): Generator<[string, unknown]> {
  const at = (key: string): string => (path === '' ? key : `${path}.${key}`);
  yield [at('no_such_field'), { ...clone(base), no_such_field: 1 }];
  for (const key of s.required ?? []) {
    const body = clone(base);
    delete body[key];
    yield [at(key), body];
  }
  for (const [key, ref] of Object.entries<S>(s.properties)) {
    const field = resolve(ref);
    for (const value of invalidValues(field)) yield [at(key), withSiblings(s, base, key, value)];
    if (field.type === 'object' && !isObject(field)) {
      yield [at(key), withSiblings(s, base, key, { key: invalidValues(field.additionalProperties)[0] })];
    }
    const inner = isObject(field) ? field : field.type === 'array' && isObject(resolve(field.items)) ? resolve(field.items) : undefined;
    if (inner === undefined) continue;
    const wrap = (v: unknown): unknown => (field.type === 'array' ? [v] : v);
    for (const [p, v] of invalidBodies(inner, baseOf(inner), field.type === 'array' ? `${at(key)}[0]` : at(key))) yield [p, withSiblings(s, base, key, wrap(v))];
  }
}

const bodyRoutes = ROUTES.filter((r): r is ActionRoute & Required<Pick<ActionRoute, 'parseBody' | 'bodySchema'>> => r.kind === 'action' && r.parseBody !== undefined);

test('the document\'s request-body schemas are the ones the server validates with (node tools/gen-openapi.mjs)', () => {
  const generated = bodySchemaComponents();
  for (const [name, schema] of Object.entries(generated)) expect(spec.components.schemas[name], name).toEqual(schema);
  for (const r of ROUTES) {
    if (r.kind !== 'action') continue;
    expect(r.bodySchema !== undefined, `${r.name}: bodySchema iff parseBody`).toBe(r.parseBody !== undefined);
    const documented = spec.paths[`/${r.name}`]?.put?.requestBody?.content?.['application/json']?.schema?.$ref;
    if (r.bodySchema !== undefined) expect(documented, r.name).toBe(`#/components/schemas/${r.bodySchema}`);
  }
});

describe.each(bodyRoutes.map((r) => [r.name, r] as const))('%s', (_name, route) => {
  const schema = resolve({ $ref: `#/components/schemas/${route.bodySchema}` });

  test('every body the document calls valid is accepted', () => {
    const cases = [...validBodies(schema, baseOf(schema), '')];
    expect(cases.length).toBeGreaterThan(2);
    for (const [field, body] of cases) {
      expect(() => route.parseBody(body), `${field}: ${JSON.stringify(body)}`).not.toThrow();
    }
  });

  test('every body the document calls invalid is refused, naming the field', () => {
    const cases = [...invalidBodies(schema, baseOf(schema), '')];
    expect(cases.length).toBeGreaterThan(4);
    for (const [field, body] of cases) {
      let error: unknown;
      try {
        route.parseBody(body);
      } catch (e) {
        error = e;
      }
      const what = `${field}: ${JSON.stringify(body)?.slice(0, 300)}`;
      expect(error, what).toMatchObject({ code: 'EINVALIDCONFIG' });
      expect(String((error as { details?: { field?: unknown } }).details?.field), what).toMatch(new RegExp(`^${field.replace(/[.[\]]/g, '\\$&')}`));
    }
  });
});
