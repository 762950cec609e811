import type { BlockBackend, ImageFormat } from '../block/backend.js';
import { openImage } from '../block/open.js';
import { ConfigError } from '../errors.js';

export function parseFormat(value: unknown, what: string): ImageFormat | null {
  if (value === undefined || value === null) return null;
  if (value !== 'raw' && value !== 'qcow2') throw new ConfigError(`${what}: unknown format "${String(value)}" (use raw or qcow2)`);
  return value;
}

export async function openForTool(path: string, readOnly: boolean, format: ImageFormat | null = null): Promise<BlockBackend> {
  return openImage(path, { readOnly, format });
}
