import { fileURLToPath } from 'node:url';
import { SnapshotError } from './errors.js';

/**
 * `file:///abs/dir` → `/abs/dir`, as Cloud Hypervisor's destination_url/source_url. Only local
 * file URLs exist for snapshots; anything else is refused with the form that works. The one
 * file-URL parser: the API checks request bodies with it too (vmm/api/validate.ts).
 */
export function snapshotUrlToPath(url: unknown): string {
  const usage = 'use file:///absolute/path/to/snapshot-dir';
  if (typeof url !== 'string' || url.length === 0) {
    throw new SnapshotError(`snapshot URL must be a non-empty string; ${usage}`, { url: String(url) });
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SnapshotError(`snapshot URL ${JSON.stringify(url)} is not a URL; ${usage}`, { url });
  }
  if (parsed.protocol !== 'file:') {
    throw new SnapshotError(`snapshot URL scheme "${parsed.protocol.replace(/:$/, '')}" is not supported (only local directories); ${usage}`, { url });
  }
  if (parsed.hostname !== '' && parsed.hostname !== 'localhost') {
    throw new SnapshotError(`snapshot URL ${JSON.stringify(url)} names host "${parsed.hostname}"; only local paths work — did you mean file:///${parsed.hostname}${parsed.pathname}?`, { url });
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new SnapshotError(`snapshot URL ${JSON.stringify(url)} has a query or fragment; ${usage}`, { url });
  }
  let path: string;
  try {
    path = fileURLToPath(parsed);
  } catch (e) {
    throw new SnapshotError(`snapshot URL ${JSON.stringify(url)} is not a valid file path (${(e as Error).message})`, { url });
  }
  // A NUL would cut the path short at the syscall: another directory than the one named.
  if (path.includes('\0')) throw new SnapshotError(`snapshot URL ${JSON.stringify(url)} contains a NUL byte; ${usage}`, { url });
  const trimmed = path.length > 1 ? path.replace(/\/+$/, '') : path;
  if (trimmed === '/') throw new SnapshotError(`snapshot URL ${JSON.stringify(url)} points at the root directory; ${usage}`, { url });
  return trimmed;
}
