/**
 * The restore request in its two spellings:
 *  - command line (tsvmm --restore, tsvmm-remote restore), Cloud Hypervisor's syntax
 *    `source_url=file:///dir[,prefault=on][,memory_restore_mode=copy|ondemand][,resume=on]` plus
 *    tsvmm keys `force=on`, `disk.ID=/new/path`, `backing_files=on` (for the disks given a new
 *    path), `vsock_socket=PATH` and `net.ID=TAP` (network device ID on host tap TAP); a bare
 *    first item is the source URL (an absolute path is accepted for it);
 *  - JSON (vm.restore): Cloud Hypervisor's RestoreConfig (api/schema/bodies.ts) plus "force",
 *    "disk_paths": {"ID": "/new/path"}, "vsock_socket" and "network_overrides":
 *    [{"iface_id": "ID", "host_dev_name": "TAP"}] (Firecracker's).
 * `disk_paths` lets clones restore onto their own copies of the disks; `force` restores even
 * over disks that changed since the snapshot (which corrupts a guest that cached them).
 */
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../errors.js';
import { parseToggle, splitOptionList, unquote } from '../util/kv.js';
import { RestoreConfig } from './api/schema/bodies.js';
import { enumMember } from './api/schema/validate-json.js';
import type { MemoryRestoreMode, RestoreRequest } from './requests.js';
import { checkTapName } from './net-config.js';

const DISK_KEY = /^disk\.([A-Za-z0-9_.-]+)$/;
const NET_KEY = /^net\.([A-Za-z0-9_.-]{1,64})$/;

/** `memory_restore_mode` in any case, as Cloud Hypervisor's CLI (copy, ondemand) and API (Copy, OnDemand) spell it. */
function memoryRestoreMode(value: string, field: string): MemoryRestoreMode {
  const schema = RestoreConfig.properties.memory_restore_mode;
  const mode = enumMember(schema.enum, value, schema['x-tsvmm-case-insensitive']);
  if (mode === undefined) throw new ConfigError(`${field}: expected one of ${schema.enum.join(', ')}, got "${value}"`);
  return mode;
}

function urlOf(value: string, what: string): string {
  if (isAbsolute(value)) return pathToFileURL(value).href;
  if (!value.startsWith('file://')) throw new ConfigError(`${what}: "${value}" must be file:///dir or an absolute path`);
  return value;
}

export function parseRestoreSpec(text: string, what = '--restore'): RestoreRequest {
  const req: Partial<RestoreRequest> = {};
  const items = splitOptionList(text, what.replace(/^--/, ''));
  if (items.length === 0) throw new ConfigError(`${what}: empty value; use source_url=file:///dir`);
  items.forEach((item, i) => {
    const eq = item.indexOf('=');
    if (eq < 0 && i === 0) {
      req.source_url = urlOf(unquote(item), what);
      return;
    }
    if (eq < 0) throw new ConfigError(`${what}: "${item}" is not key=value`);
    const key = item.slice(0, eq);
    const value = unquote(item.slice(eq + 1));
    const disk = DISK_KEY.exec(key);
    const net = NET_KEY.exec(key);
    if (key === 'source_url') req.source_url = urlOf(value, `${what} source_url`);
    else if (key === 'prefault') req.prefault = parseToggle(value, `${what} prefault`);
    else if (key === 'force') req.force = parseToggle(value, `${what} force`);
    else if (key === 'resume') req.resume = parseToggle(value, `${what} resume`);
    else if (key === 'backing_files') req.backing_files = parseToggle(value, `${what} backing_files`);
    else if (key === 'vsock_socket') {
      if (value === '') throw new ConfigError(`${what} vsock_socket: a path is required`);
      req.vsock_socket = value;
    } else if (key === 'memory_restore_mode') req.memory_restore_mode = memoryRestoreMode(value, `${what} memory_restore_mode`);
    else if (disk !== null) {
      if (!isAbsolute(value)) throw new ConfigError(`${what} ${key}: "${value}" must be an absolute path`);
      req.disk_paths = { ...req.disk_paths, [disk[1]!]: value };
    } else if (net !== null) {
      const iface = net[1]!;
      if (req.network_overrides?.some((o) => o.iface_id === iface) === true) throw new ConfigError(`${what} ${key}: given twice`);
      req.network_overrides = [...req.network_overrides ?? [], { iface_id: iface, host_dev_name: checkTapName(value, `${what} ${key}`) }];
    } else {
      throw new ConfigError(`${what}: unknown key "${key}" (known: source_url, prefault, memory_restore_mode, resume, force, disk.ID, backing_files, vsock_socket, net.ID)`);
    }
  });
  if (req.source_url === undefined) throw new ConfigError(`${what}: source_url=file:///dir is required`);
  return req as RestoreRequest;
}
