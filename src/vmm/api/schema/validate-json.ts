/**
 * Checks a JSON value against a schema of json-schema.ts and returns it with the `null`s of
 * nullable fields dropped. Every refusal is a ConfigError whose message starts with the field's
 * dotted path (`disks[0].path`) and says what was expected, so a person can fix the body without
 * reading code. Unknown fields are errors: a misspelt `boot_vcpu` silently ignored would boot a VM
 * the user did not ask for.
 */
import { ConfigError } from '../../../errors.js';
import { SnapshotError } from '../../../snapshot/errors.js';
import { snapshotUrlToPath } from '../../../snapshot/url.js';
import { checkOffOrDefault } from '../ch-sections.js';
import type { IntegerSchema, MapSchema, ObjectSchema, Schema, Static, StringSchema } from './json-schema.js';

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number' && !Number.isInteger(value)) return `the number ${value}`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}

function refuse(field: string, message: string): never {
  throw new ConfigError(`${field}: ${message}`, { field });
}

function expected(field: string, what: string, value: unknown): never {
  refuse(field, `expected ${what}, got ${describe(value)}`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The member of an enum that `value` names (in any case with `x-tsvmm-case-insensitive`), or undefined. */
export function enumMember<const E extends string>(members: readonly E[], value: string, caseInsensitive: boolean | undefined): E | undefined {
  return caseInsensitive === true
    ? members.find((e) => e.toLowerCase() === value.toLowerCase())
    : members.find((e) => e === value);
}

function checkString(s: StringSchema, value: unknown, field: string): string {
  if (typeof value !== 'string') expected(field, 'a string', value);
  if (s.enum !== undefined) {
    const found = enumMember(s.enum, value, s['x-tsvmm-case-insensitive']);
    if (found === undefined) expected(field, `one of ${s.enum.join(', ')}`, value);
    return found;
  }
  if (s.minLength !== undefined && value.length < s.minLength) {
    refuse(field, s.minLength === 1 ? 'must not be empty' : `at least ${s.minLength} characters`);
  }
  if (s.maxLength !== undefined && value.length > s.maxLength) refuse(field, `at most ${s.maxLength} characters`);
  if (s.pattern !== undefined && !new RegExp(s.pattern, 'u').test(value)) {
    refuse(field, `"${value}" must be ${s['x-tsvmm-pattern-means'] ?? `of the form /${s.pattern}/`}`);
  }
  const format = s['x-tsvmm-format'];
  if (format !== undefined && value.includes('\0')) refuse(field, 'must not contain NUL bytes');
  if (format === 'absolute-path' && !value.startsWith('/')) refuse(field, `"${value}" must be an absolute path`);
  if (format === 'file-url') {
    try {
      snapshotUrlToPath(value);
    } catch (e) {
      // The snapshot layer's parser decides, so a body is refused here exactly when the snapshot
      // or restore would refuse its URL.
      if (e instanceof SnapshotError) refuse(field, e.message);
      throw e;
    }
  }
  return value;
}

function checkInteger(s: IntegerSchema, value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) expected(field, 'an integer', value);
  const { minimum, maximum } = s;
  if ((minimum !== undefined && value < minimum) || (maximum !== undefined && value > maximum)) {
    refuse(field, maximum === undefined ? `${value} is below the minimum ${minimum}` : `${value} is out of range (${minimum ?? '-∞'}..${maximum})`);
  }
  if (!Number.isSafeInteger(value)) refuse(field, `${value} is beyond 2^53, where JSON numbers lose precision`);
  if (s.multipleOf !== undefined && value % s.multipleOf !== 0) refuse(field, `${value} is not a multiple of ${s.multipleOf}`);
  return value;
}

function checkObject(s: ObjectSchema, value: unknown, field: string): Record<string, unknown> {
  if (!isPlainObject(value)) expected(field === '' ? 'body' : field, 'a JSON object', value);
  const allowed = Object.keys(s.properties);
  const at = (key: string): string => (field === '' ? key : `${field}.${key}`);
  for (const key of Object.keys(value)) {
    if (!Object.hasOwn(s.properties, key)) {
      throw new ConfigError(`unknown field "${at(key)}" (allowed here: ${allowed.join(', ')})`, { field: at(key) });
    }
  }
  // A property set to undefined (a JavaScript caller's object; JSON has no undefined) is absent.
  for (const key of s.required ?? []) {
    if (value[key] === undefined) {
      const example = s.properties[key]?.example;
      refuse(at(key), `required${example === undefined ? '' : ` (e.g. ${JSON.stringify(example)})`}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, property] of Object.entries(s.properties)) {
    if (value[key] === undefined) continue;
    const checked = check(property, value[key], at(key));
    if (checked !== undefined) out[key] = checked;
  }
  return out;
}

function checkMap(s: MapSchema, value: unknown, field: string): Record<string, unknown> {
  if (!isPlainObject(value)) expected(field, 'a JSON object', value);
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) out[key] = check(s.additionalProperties, v, `${field}.${key}`);
  return out;
}

function check(s: Schema, value: unknown, field: string): unknown {
  if ('x-tsvmm-off-or-default' in s) {
    checkOffOrDefault(field, value);
    return value; // kept as given (vm.info reports it back)
  }
  if (value === null && s.nullable === true) return undefined;
  switch (s.type) {
    case 'string': return checkString(s, value, field);
    case 'integer': return checkInteger(s, value, field);
    case 'boolean':
      if (typeof value !== 'boolean') expected(field, 'a boolean (true or false)', value);
      return value;
    case 'array':
      if (!Array.isArray(value)) expected(field, 'an array', value);
      return value.map((item, i) => check(s.items, item, `${field}[${i}]`));
    case 'object':
      return s.additionalProperties === false ? checkObject(s, value, field) : checkMap(s, value, field);
  }
}

/** `value` checked against `schema`, typed as the schema says; throws ConfigError naming the field. */
export function validateJson<const S extends Schema>(schema: S, value: unknown): Static<S> {
  return check(schema, value, '') as Static<S>;
}
