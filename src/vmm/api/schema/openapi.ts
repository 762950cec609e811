/**
 * The request-body schemas as docs/openapi.json prints them (components.schemas): each schema of
 * BODY_SCHEMAS under its name, with a nested schema that has a name of its own (CpusConfig in
 * VmConfig) printed as a `$ref` to it. tools/gen-openapi.mjs writes them into the document; a unit
 * test checks the document holds exactly these.
 */
import { BODY_SCHEMAS } from './bodies.js';
import type { Schema } from './json-schema.js';

type Json = { [key: string]: unknown };

function print(schema: Schema, names: ReadonlyMap<Schema, string>, top: boolean): Json {
  const name = names.get(schema);
  if (!top && name !== undefined) return { $ref: `#/components/schemas/${name}` };
  const out: Json = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'required' && Array.isArray(value) && value.length === 0) continue; // OpenAPI 3.0: non-empty when given
    if (key === 'properties') {
      out[key] = Object.fromEntries(Object.entries(value as Record<string, Schema>).map(([k, v]) => [k, print(v, names, false)]));
    } else if ((key === 'items' || key === 'additionalProperties') && typeof value === 'object') {
      out[key] = print(value as Schema, names, false);
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** components.schemas entries for the request bodies, in BODY_SCHEMAS' order. */
export function bodySchemaComponents(): Record<string, Json> {
  const names = new Map<Schema, string>(Object.entries(BODY_SCHEMAS).map(([name, schema]) => [schema, name]));
  return Object.fromEntries(Object.entries(BODY_SCHEMAS).map(([name, schema]) => [name, print(schema, names, true)]));
}
