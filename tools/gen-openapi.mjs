#!/usr/bin/env node
// Writes the request-body schemas of src/vmm/api/schema/bodies.ts (through dist/: npm run build
// first) into docs/openapi.json's components.schemas, replacing the entries of the same name and
// keeping the rest of the document (paths, responses, response schemas) as it is.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const { bodySchemaComponents } = await import(join(root, 'dist/vmm/api/schema/openapi.js'));
const file = join(root, 'docs/openapi.json');
const doc = JSON.parse(readFileSync(file, 'utf8'));
const generated = bodySchemaComponents();
const schemas = {};
for (const [name, schema] of Object.entries(doc.components.schemas)) schemas[name] = generated[name] ?? schema;
for (const [name, schema] of Object.entries(generated)) schemas[name] ??= schema;
doc.components.schemas = schemas;
writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
