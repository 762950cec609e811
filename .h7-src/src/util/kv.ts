import { ConfigError } from '../errors.js';

/**
 * Cloud Hypervisor's option syntax: `key=value,key=value` (e.g. `path=a.raw,readonly=on`).
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
  const items = text.split(',').filter((s) => s.length > 0);
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
      value = item;
    } else {
      key = item.slice(0, eq);
      value = item.slice(eq + 1);
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
