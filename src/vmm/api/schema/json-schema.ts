/**
 * The subset of OpenAPI 3.0's schema language the API's request bodies are written in, as plain
 * objects: the same value validates a body (validate-json.ts) and is printed into
 * docs/openapi.json (openapi.ts), so the document cannot say one thing while the server checks
 * another. Builders keep literal types, so `Static<typeof X>` is the TypeScript type of a body
 * that passed X.
 *
 * Why not TypeBox + Ajv: the checks that matter here are not all JSON Schema (Cloud Hypervisor
 * sections accepted only "off or at their default", `file://` URLs checked by the snapshot layer,
 * case-insensitive enums as its CLI spells them), and the messages must name the field the way
 * every other tsvmm error does. A validator for this small subset is ~150 lines; two libraries
 * and their keyword extensions would be more, for the same result.
 *
 * Extensions (OpenAPI allows `x-` keys): `x-tsvmm-format` (text and path: no NUL;
 * absolute-path; file-url as the snapshot layer reads it), `x-tsvmm-case-insensitive` (enum), `x-tsvmm-pattern-means` (the
 * pattern in words, for messages), `x-tsvmm-off-or-default` (a Cloud Hypervisor field tsvmm
 * has nothing behind yet: any JSON, accepted only when off or at its default; ch-sections.ts),
 * and, for readers and the tests only, `x-tsvmm-with` / `x-tsvmm-instead-of` (a field valid only
 * with given sibling values / without a sibling: the rules checked after the schema).
 */

interface Common {
  readonly description?: string;
  readonly nullable?: boolean;
  readonly deprecated?: boolean;
  readonly example?: unknown;
  readonly default?: unknown;
  /** Valid only with these values of its sibling fields (the rest of the document says why). */
  readonly 'x-tsvmm-with'?: Readonly<Record<string, unknown>>;
  /** Valid only without this sibling field (an older spelling of it). */
  readonly 'x-tsvmm-instead-of'?: string;
}

/** Each refuses NUL bytes (they would cut the string short at a syscall). */
export type StringFormat = 'text' | 'path' | 'absolute-path' | 'file-url';

export interface StringSchema extends Common {
  readonly type: 'string';
  readonly enum?: readonly string[];
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly 'x-tsvmm-format'?: StringFormat;
  readonly 'x-tsvmm-case-insensitive'?: boolean;
  readonly 'x-tsvmm-pattern-means'?: string;
}

export interface IntegerSchema extends Common {
  readonly type: 'integer';
  readonly format?: 'int64';
  readonly minimum?: number;
  readonly maximum?: number;
  readonly multipleOf?: number;
}

export interface BooleanSchema extends Common {
  readonly type: 'boolean';
}

export interface ArraySchema extends Common {
  readonly type: 'array';
  readonly items: Schema;
}

export interface ObjectSchema extends Common {
  readonly type: 'object';
  readonly properties: Readonly<Record<string, Schema>>;
  readonly required?: readonly string[];
  readonly additionalProperties: false;
}

/** An object used as a map: any keys, each value of one schema. */
export interface MapSchema extends Common {
  readonly type: 'object';
  readonly additionalProperties: Schema;
}

/** Any JSON value, checked by the "off or at Cloud Hypervisor's default" rule. */
export interface OffOrDefaultSchema extends Common {
  readonly 'x-tsvmm-off-or-default': true;
}

export type Schema = StringSchema | IntegerSchema | BooleanSchema | ArraySchema | ObjectSchema | MapSchema | OffOrDefaultSchema;

type Options<S> = Omit<S, 'type' | 'properties' | 'required' | 'additionalProperties' | 'items'>;

// NoInfer on the builders' results: without it a builder used inside obj({...}) takes its type
// from the Schema union it is checked against, and Static<> loses the field's type.

export function str<const O extends Options<StringSchema> = {}>(options: O = {} as O): { type: 'string' } & NoInfer<O> {
  return { type: 'string', ...options };
}

export function int<const O extends Options<IntegerSchema> = {}>(options: O = {} as O): { type: 'integer' } & NoInfer<O> {
  return { type: 'integer', ...options };
}

export function bool<const O extends Options<BooleanSchema> = {}>(options: O = {} as O): { type: 'boolean' } & NoInfer<O> {
  return { type: 'boolean', ...options };
}

export function arr<const I extends Schema, const O extends Options<ArraySchema> = {}>(items: I, options: O = {} as O): { type: 'array'; items: NoInfer<I> } & NoInfer<O> {
  return { type: 'array', items, ...options };
}

export function obj<const P extends Record<string, Schema>, const R extends keyof P & string = never, const O extends Options<ObjectSchema> = {}>(
  properties: P,
  options: O & { required?: readonly R[] } = {} as O,
): { type: 'object'; additionalProperties: false; properties: NoInfer<P>; required: readonly NoInfer<R>[] } & NoInfer<O> {
  const { required = [], ...rest } = options;
  return { type: 'object', additionalProperties: false, properties, required, ...(rest as O) };
}

export function map<const V extends Schema, const O extends Options<MapSchema> = {}>(values: V, options: O = {} as O): { type: 'object'; additionalProperties: NoInfer<V> } & NoInfer<O> {
  return { type: 'object', additionalProperties: values, ...options };
}

export function offOrDefault(description: string): OffOrDefaultSchema {
  return { 'x-tsvmm-off-or-default': true, nullable: true, description };
}

/**
 * The value of a body that passed `S`: a `null` given for a nullable field is dropped (Cloud
 * Hypervisor writes an absent optional field as null), so those fields are simply optional.
 */
export type Static<S> =
  S extends OffOrDefaultSchema ? unknown
    : S extends { type: 'string'; enum: readonly (infer E)[] } ? E
      : S extends { type: 'string' } ? string
        : S extends { type: 'integer' } ? number
          : S extends { type: 'boolean' } ? boolean
            : S extends { type: 'array'; items: infer I } ? Array<Static<I>>
              : S extends { type: 'object'; properties: infer P; required: readonly (infer R)[] }
                ? { [K in keyof P as K extends R ? K : never]: Static<P[K]> } & { [K in keyof P as K extends R ? never : K]?: Static<P[K]> }
                : S extends { type: 'object'; additionalProperties: infer V } ? Record<string, Static<V>>
                  : never;
