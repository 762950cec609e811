import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { API_BASE, ROUTES } from '../../../src/vmm/api/routes.js';

interface Operation {
  requestBody?: { content: Record<string, { schema: { $ref: string } }> };
  responses: Record<string, unknown>;
}
interface Spec {
  openapi: string;
  servers: Array<{ url: string }>;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; responses: Record<string, unknown> };
}

const spec = JSON.parse(readFileSync(new URL('../../../docs/openapi.json', import.meta.url), 'utf8')) as Spec;

test('the spec and the server route table list the same paths and methods', () => {
  expect(spec.openapi).toMatch(/^3\./);
  expect(new URL(spec.servers[0]?.url ?? '').pathname).toBe(API_BASE);
  const fromSpec = Object.entries(spec.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
  const fromServer = ROUTES.map((r) => `${r.method} /${r.name}`);
  expect(new Set(fromSpec)).toEqual(new Set(fromServer));
  expect(fromSpec).toHaveLength(fromServer.length);
});

test('routes with bodies document them; 200 routes document a schema; 204 routes do not', () => {
  for (const r of ROUTES) {
    const op = spec.paths[`/${r.name}`]?.[r.method.toLowerCase()];
    expect(op, r.name).toBeDefined();
    const takesBody = r.kind === 'action' && r.parseBody !== undefined;
    expect(op?.requestBody !== undefined, `${r.name} requestBody`).toBe(takesBody);
    if (r.kind === 'json') expect(op?.responses['200'], r.name).toBeDefined();
    if (r.kind === 'action') expect(Object.keys(op?.responses ?? {}), r.name).toContain('204');
    if (r.kind === 'websocket') expect(Object.keys(op?.responses ?? {}), r.name).toContain('101');
  }
});

test('every $ref resolves', () => {
  const text = JSON.stringify(spec);
  const refs = [...text.matchAll(/"\$ref":"#\/components\/(schemas|responses)\/([^"]+)"/g)];
  expect(refs.length).toBeGreaterThan(10);
  for (const [, kind, name] of refs) {
    expect(spec.components[kind as 'schemas' | 'responses'][name ?? ''], `${kind}/${name}`).toBeDefined();
  }
});
