#!/usr/bin/env node
// Prints, one per line, the .ko files to insmod (in order) so that each named module loads:
// its dependencies first, each once. Debian's kernel package ships no modules.dep (depmod makes
// it at install time, and kmod is not on these machines), so the dependencies are read from each
// module's own .modinfo section ("depends=a,b").
//   node modules.mjs <modules-dir> <module>...
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, ...wanted] = process.argv.slice(2);
if (!dir || wanted.length === 0) {
  console.error('usage: modules.mjs <lib/modules/VERSION> <module>...');
  process.exit(2);
}

/** Module names use '_' and '-' interchangeably; the kernel compares them with '-' as '_'. */
const canonical = (name) => name.replace(/-/g, '_');

const pathOf = new Map();
(function walk(d) {
  for (const entry of readdirSync(d, { withFileTypes: true })) {
    const p = join(d, entry.name);
    if (entry.isDirectory()) walk(p);
    else if (entry.name.endsWith('.ko')) pathOf.set(canonical(entry.name.slice(0, -3)), p);
  }
})(dir);

function dependsOf(path) {
  const bytes = readFileSync(path);
  const at = bytes.indexOf('\0depends=');
  if (at < 0) return [];
  const end = bytes.indexOf(0, at + 1);
  const list = bytes.subarray(at + '\0depends='.length, end).toString('latin1');
  return list ? list.split(',').map(canonical) : [];
}

const order = [];
const done = new Set();
function visit(name, chain) {
  if (done.has(name)) return;
  if (chain.includes(name)) throw new Error(`module dependency cycle: ${[...chain, name].join(' -> ')}`);
  const path = pathOf.get(name);
  if (!path) {
    console.error(`modules.mjs: no module ${name} under ${dir} (built into the kernel, or misspelt?)`);
    process.exit(1);
  }
  for (const dep of dependsOf(path)) visit(dep, [...chain, name]);
  done.add(name);
  order.push(path);
}
for (const name of wanted) visit(canonical(name), []);
console.log(order.join('\n'));
