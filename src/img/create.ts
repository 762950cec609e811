import { dirname, isAbsolute, resolve } from 'node:path';
import { createQcow2 } from '../block/qcow2/create.js';
import { RawBackend } from '../block/raw.js';
import type { ImageFormat } from '../block/backend.js';
import { openImage } from '../block/open.js';
import { ConfigError } from '../errors.js';
import { parseSize } from '../util/size.js';

export interface CreateRequest {
  format: ImageFormat;
  file: string;
  size: number | null;
  backing: string | null;
  backingFormat: ImageFormat | null;
  options: Record<string, string>;
}

/** Parses `-o key=value,key=value` the way qemu-img does (sizes accept suffixes). */
export function parseOptions(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const group of list) {
    for (const pair of group.split(',')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new ConfigError(`-o ${pair}: expected key=value`);
      out[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return out;
}

const KNOWN_OPTIONS = new Set(['cluster_size', 'refcount_bits', 'compat', 'size', 'backing_file', 'backing_fmt']);

export async function createImage(req: CreateRequest): Promise<void> {
  for (const key of Object.keys(req.options)) {
    if (!KNOWN_OPTIONS.has(key)) throw new ConfigError(`-o ${key}: unsupported option (supported: ${[...KNOWN_OPTIONS].join(', ')})`);
  }
  const backing = req.backing ?? req.options['backing_file'] ?? null;
  const backingFormat = req.backingFormat ?? (req.options['backing_fmt'] as ImageFormat | undefined) ?? null;
  let size = req.size ?? (req.options['size'] !== undefined ? parseSize(req.options['size'], 'size') : null);
  if (backing !== null) {
    if (req.format !== 'qcow2') throw new ConfigError('a backing file needs -f qcow2');
    if (backingFormat === null) throw new ConfigError('-b needs the backing file format too (-F raw or -F qcow2)');
    const path = isAbsolute(backing) ? backing : resolve(dirname(req.file), backing);
    const base = await openImage(path, { readOnly: true, format: backingFormat });
    size ??= base.size;
    await base.close();
  }
  if (size === null) throw new ConfigError(`${req.file}: give an image size (or a backing file)`);
  if (req.format === 'raw') {
    if (Object.keys(req.options).some((k) => k !== 'size')) throw new ConfigError('-o options other than size need -f qcow2');
    const raw = await RawBackend.create(req.file, size);
    await raw.close();
    return;
  }
  const num = (key: string): number | undefined => (req.options[key] === undefined ? undefined : parseSize(req.options[key]!, key));
  const compat = req.options['compat'];
  if (compat !== undefined && compat !== '0.10' && compat !== '1.1' && compat !== 'v2' && compat !== 'v3') {
    throw new ConfigError(`compat=${compat}: use 0.10 or 1.1`);
  }
  await createQcow2(req.file, {
    size,
    clusterSize: num('cluster_size'),
    refcountBits: num('refcount_bits'),
    compat: compat === '0.10' || compat === 'v2' ? '0.10' : '1.1',
    backingFile: backing,
    backingFormat,
  });
}
