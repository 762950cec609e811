import type { BlockBackend } from '../block/backend.js';
import { checkImage, type CheckReport, type RepairMode } from '../block/qcow2/check.js';
import { Qcow2Image } from '../block/qcow2/image.js';
import { ConfigError } from '../errors.js';

/** qemu-img check's exit codes. */
export const CHECK_CLEAN = 0;
export const CHECK_NOT_COMPLETED = 1;
export const CHECK_CORRUPT = 2;
export const CHECK_LEAKS = 3;

export interface CheckOutcome {
  exitCode: number;
  json: Record<string, unknown>;
  text: string;
}

export async function runCheck(image: BlockBackend, filename: string, repair: RepairMode): Promise<CheckOutcome> {
  if (!(image instanceof Qcow2Image)) throw new ConfigError(`${filename}: format ${image.format} does not support checks`);
  const r = await checkImage(image.meta, repair);
  const exitCode = r.checkErrors > 0 ? CHECK_NOT_COMPLETED : r.corruptions > 0 ? CHECK_CORRUPT : r.leaks > 0 ? CHECK_LEAKS : CHECK_CLEAN;
  return { exitCode, json: checkJson(r, filename), text: checkText(r) };
}

function checkJson(r: CheckReport, filename: string): Record<string, unknown> {
  const j: Record<string, unknown> = { 'image-end-offset': r.imageEndOffset, 'total-clusters': r.totalClusters, 'check-errors': r.checkErrors };
  const optional: [string, number][] = [
    ['leaks', r.leaks], ['leaks-fixed', r.leaksFixed], ['corruptions', r.corruptions], ['corruptions-fixed', r.corruptionsFixed],
    ['allocated-clusters', r.allocatedClusters], ['fragmented-clusters', r.fragmentedClusters], ['compressed-clusters', r.compressedClusters],
  ];
  for (const [k, v] of optional) if (v !== 0) j[k] = v;
  j['filename'] = filename;
  j['format'] = 'qcow2';
  return j;
}

function pct(n: number, total: number): string {
  return total === 0 ? '0.00' : ((n * 100) / total).toFixed(2);
}

function checkText(r: CheckReport): string {
  const lines = [...r.messages];
  if (r.leaksFixed > 0 || r.corruptionsFixed > 0) {
    lines.push('The following inconsistencies were found and repaired:', '', `    ${r.leaksFixed} leaked clusters`, `    ${r.corruptionsFixed} corruptions`, '');
  }
  if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) lines.push('No errors were found on the image.');
  else {
    if (r.corruptions > 0) lines.push('', `${r.corruptions} errors were found on the image.`, 'Data may be corrupted, or further writes to the image may corrupt it.');
    if (r.leaks > 0) lines.push('', `${r.leaks} leaked clusters were found on the image.`, 'This means waste of disk space, but no harm to data.');
  }
  if (r.totalClusters > 0) {
    lines.push(`${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters, r.totalClusters)}% allocated, ${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ${pct(r.compressedClusters, r.allocatedClusters)}% compressed clusters`);
  }
  lines.push(`Image end offset: ${r.imageEndOffset}`);
  return lines.join('\n') + '\n';
}
