import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * vitest transforms .ts only in its own module graph; a worker_thread loads plain JavaScript.
 * So tests that need src/ code inside a Worker transpile the layers involved (types stripped,
 * no type check: tsc covers that) into native-shims/out/worker-dist (git-ignored) and point the
 * worker at it. Koffi resolves from /work/main/node_modules as usual.
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const workerDist = join(root, 'native-shims', 'out', 'worker-dist');

const LAYERS = ['sys', 'kvm', 'memory'];

export function buildForWorkers(): string {
  const files = [join(root, 'src', 'errors.ts')];
  for (const layer of LAYERS) {
    for (const f of readdirSync(join(root, 'src', layer))) if (f.endsWith('.ts')) files.push(join(root, 'src', layer, f));
  }
  for (const file of files) {
    const out = join(workerDist, file.slice(join(root, 'src').length + 1).replace(/\.ts$/, '.js'));
    const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
      fileName: file,
    });
    // Test files run in parallel and may build at the same moment as another one's worker imports:
    // leave identical files alone and replace changed ones atomically (rename), never half-written.
    if (existsSync(out) && readFileSync(out, 'utf8') === outputText) continue;
    mkdirSync(dirname(out), { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    writeFileSync(tmp, outputText);
    renameSync(tmp, out);
  }
  // The folder sits under the repository's package.json ("type": "module"): .js files are ESM.
  return workerDist;
}
