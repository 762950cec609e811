import { ConfigError } from '../errors.js';

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/**
 * Parses sizes the way Cloud Hypervisor and qemu-img accept them: "512M", "4G", "1048576",
 * "64K", "1.5G" (binary units; a trailing "iB"/"B" is tolerated). Throws ConfigError naming `what`.
 */
export function parseSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (m === null) throw new ConfigError(`${what}: "${text}" is not a size (use e.g. 512M, 4G, 1048576)`);
  const value = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(value)) throw new ConfigError(`${what}: "${text}" is not a whole number of bytes`);
  return value;
}
