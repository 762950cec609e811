import { ConfigError } from '../errors.js';

/**
 * Splits an option value at its top-level commas the way Cloud Hypervisor's option parser does: a
 * comma inside double quotes or inside `[...]` (a list, which may nest) does not split, so
 * `path="/vm/a,b.raw"` and `topology=[1,2]` are one item each. Unbalanced quotes or brackets are
 * an error. Empty items (`a=1,,b=2`) are dropped.
 */
export function splitOptionList(text: string, option: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let quoted = false;
  let current = '';
  for (const c of text) {
    if (c === '"') quoted = !quoted;
    else if (!quoted && c === '[') depth++;
    else if (!quoted && c === ']' && --depth < 0) throw new ConfigError(`--${option}: "]" without "[" in "${text}"`);
    if (c === ',' && !quoted && depth === 0) {
      items.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  if (quoted) throw new ConfigError(`--${option}: unterminated quote in "${text}"`);
  if (depth !== 0) throw new ConfigError(`--${option}: "[" without "]" in "${text}"`);
  items.push(current);
  return items.filter((s) => s.length > 0);
}

/** A value given in double quotes (to hold commas) without them; other values as they are. */
export function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

/**
 * Cloud Hypervisor's option syntax: `key=value,key=value` (e.g. `path=a.raw,readonly=on`), split
 * by splitOptionList (quotes and `[lists]` may hold commas; a quoted value loses its quotes).
 * A bare first item is taken as `defaultKey` when given (so `--memory 512M` works too).
 * Unknown keys are an error that lists the known ones.
 */
export function parseKeyValues(
  text: string,
  option: string,
  known: readonly string[],
  defaultKey?: string,
): Map<string, string> {
  const out = new Map<string, string>();
  const items = splitOptionList(text, option);
  if (items.length === 0) throw new ConfigError(`--${option}: empty value`);
  items.forEach((item, i) => {
    const eq = item.indexOf('=');
    let key: string;
    let value: string;
    if (eq < 0) {
      if (i !== 0 || defaultKey === undefined) {
        throw new ConfigError(`--${option}: "${item}" is not key=value (known keys: ${known.join(', ')})`);
      }
      key = defaultKey;
      value = unquote(item);
    } else {
      key = item.slice(0, eq);
      value = unquote(item.slice(eq + 1));
    }
    if (!known.includes(key)) throw new ConfigError(`--${option}: unknown key "${key}" (known keys: ${known.join(', ')})`);
    if (out.has(key)) throw new ConfigError(`--${option}: "${key}" given twice`);
    out.set(key, value);
  });
  return out;
}

/** on/off/true/false as Cloud Hypervisor accepts them. */
export function parseToggle(value: string, what: string): boolean {
  switch (value.toLowerCase()) {
    case 'on': case 'true': case 'yes': return true;
    case 'off': case 'false': case 'no': return false;
    default: throw new ConfigError(`${what}: "${value}" must be on or off`);
  }
}

export function parseCount(value: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(value)) throw new ConfigError(`${what}: "${value}" is not a whole number`);
  const n = Number(value);
  if (n < min || n > max) throw new ConfigError(`${what}: ${n} is out of range ${min}..${max}`);
  return n;
}
