import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The layer rules of docs/architecture.md, checked on the import statements of src/**\/*.ts (type
 * imports and dynamic imports included: either ties the modules together).
 *
 * Layers, lowest first: sys → kvm → memory → block → devices → snapshot → vmm → cli. A module may
 * import its own layer and the layers below it. img (tsvmm-img's verbs) sits beside vmm on block:
 * it may import block and below, and only cli imports it. util/, errors.ts and error-codes.ts are
 * the foundation every layer may use (they import only each other). No import cycle anywhere.
 */
const ROOT = resolve(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');
const ORDER = ['sys', 'kvm', 'memory', 'block', 'devices', 'snapshot', 'vmm', 'cli'];
const FOUNDATION = new Set(['util', 'errors.ts', 'error-codes.ts']);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** Each module (path relative to src/) with the src modules it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const deps = info.importedFiles
      .map((f) => f.fileName)
      .filter((s) => s.startsWith('.'))
      .map((s) => relative(SRC, resolve(dirname(file), s.replace(/\.js$/, '.ts'))));
    graph.set(relative(SRC, file), deps);
  }
  return graph;
}

const layerOf = (module: string): string => module.split('/')[0]!;

/** Whether `from` may import `to` under the layer rules. */
function allowed(from: string, to: string): boolean {
  const a = layerOf(from);
  const b = layerOf(to);
  if (a === b || FOUNDATION.has(b)) return true;
  if (FOUNDATION.has(a)) return false;
  if (b === 'img') return a === 'cli';
  const target = ORDER.indexOf(b);
  if (a === 'img') return target >= 0 && target <= ORDER.indexOf('block');
  return target >= 0 && target < ORDER.indexOf(a);
}

/** Strongly connected components with more than one module (or a module importing itself). */
function cycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

describe('architecture', () => {
  const graph = importGraph();

  it('resolves every relative import to a module under src/', () => {
    const missing = [...graph].flatMap(([m, deps]) => deps.filter((d) => !graph.has(d)).map((d) => `${m} → ${d}`));
    expect(missing).toEqual([]);
  });

  it('imports only downward: sys → kvm → memory → block → devices → snapshot → vmm → cli, img beside vmm on block', () => {
    const wrong = [...graph].flatMap(([m, deps]) => deps.filter((d) => !allowed(m, d)).map((d) => `${m} → ${d}`));
    expect(wrong).toEqual([]);
  });

  it('has no import cycle', () => {
    expect(cycles(graph)).toEqual([]);
  });
});
