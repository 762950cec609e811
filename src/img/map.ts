import type { BlockBackend } from '../block/backend.js';
import { forEachExtent, layersOf, type ChainExtent } from '../block/chain/walk.js';

/** The extents of the whole disk, neighbours with the same status merged (as qemu-img map). */
export async function mapImage(image: BlockBackend): Promise<ChainExtent[]> {
  const out: ChainExtent[] = [];
  await forEachExtent(image, 1024 * 1024 * 1024, async (e) => {
    const last = out[out.length - 1];
    if (last !== undefined && last.depth === e.depth && last.present === e.present && last.zero === e.zero && last.data === e.data &&
      (last.offset === undefined) === (e.offset === undefined) && (e.offset === undefined || last.offset! + last.length === e.offset)) {
      last.length += e.length;
      return;
    }
    out.push({ ...e });
  });
  return out;
}

/** `--output=json`, byte-for-byte qemu-img's layout. */
export function formatMapJson(extents: ChainExtent[]): string {
  const lines = extents.map((e) => {
    const offset = e.offset === undefined ? '' : `, "offset": ${e.offset}`;
    return `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}${offset}}`;
  });
  return `[${lines.join(',\n')}]\n`;
}

/** The human form: data extents and the file that holds them. */
export function formatMapHuman(image: BlockBackend, extents: ChainExtent[], filename: string): string {
  const layers = layersOf(image);
  const names = layers.map((l, i) => (i === 0 ? filename : l.path));
  const hex = (n: number): string => `0x${n.toString(16)}`;
  const lines = [`${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File`];
  for (const e of extents) {
    if (!e.data || e.offset === undefined) continue;
    lines.push(`${hex(e.start).padEnd(16)}${hex(e.length).padEnd(16)}${hex(e.offset).padEnd(16)}${names[e.depth] ?? '?'}`);
  }
  return lines.join('\n') + '\n';
}
