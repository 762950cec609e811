import type { PingInfo } from '../vmm/api/client.js';
import type { VmCounters, VmInfo, VmmEvent } from '../vmm/controller.js';
import type { LiveSnapshotSummary } from '../vmm/requests.js';

/** tsvmm-remote's human-readable output (the --json output is the API's JSON as-is). */

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && v % 1024 === 0 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v} ${units[u]}`;
}

export function formatPing(p: PingInfo): string {
  const features = p.features.length > 0 ? p.features.join(', ') : 'none';
  return `tsvmm ${p.version} (build ${p.build_version}), pid ${p.pid}, features: ${features}`;
}

export function formatInfo(info: VmInfo): string {
  const c = info.config;
  const rows: Array<[string, string]> = [
    ['state', info.state],
    ['vcpus', `${c.cpus.boot_vcpus} (max ${c.cpus.max_vcpus})`],
    ['memory', `${bytes(c.memory.size)} (actual ${bytes(info.memory_actual_size)})`],
    ['kernel', c.payload.kernel],
  ];
  if (c.payload.initramfs !== undefined) rows.push(['initramfs', c.payload.initramfs]);
  if (c.payload.cmdline !== undefined) rows.push(['cmdline', c.payload.cmdline]);
  for (const d of c.disks) {
    rows.push([d.id, `${d.path} (${d.readonly ? 'read-only' : 'read-write'}${d.format === undefined ? '' : `, ${d.format}`})`]);
  }
  const port = (p: { mode: string; file?: string; socket?: string }): string => [p.mode, p.file ?? p.socket].filter((x) => x !== undefined).join(' ');
  rows.push(['serial', port(c.serial)]);
  // Configs of snapshots from before the virtio console have none.
  if (c.console !== undefined) rows.push(['console', port(c.console)]);
  if (c.rng !== undefined) rows.push(['rng', c.rng.src]);
  if (c.vsock !== undefined) rows.push([c.vsock.id, `vsock cid ${c.vsock.cid}, ${c.vsock.socket}`]);
  for (const n of c.net ?? []) {
    const host = [n.tap === undefined ? undefined : `tap ${n.tap}`, n.fd === undefined ? undefined : `fd ${n.fd}`].filter((x) => x !== undefined).join(' ');
    const ip = n.ip === undefined ? '' : `, host ${n.ip}${n.mask === undefined ? '' : ` mask ${n.mask}`}`;
    rows.push([n.id, `net ${host === '' ? 'a new tap' : host}, mac ${n.mac}${ip}`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length)) + 1;
  return rows.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n');
}

export function formatCounters(counters: VmCounters): string {
  const lines = Object.keys(counters)
    .sort()
    .flatMap((owner) => Object.entries(counters[owner] ?? {}).sort(([a], [b]) => a.localeCompare(b)).map(([name, value]) => `${owner}.${name} ${value}`));
  return lines.length > 0 ? lines.join('\n') : '(no counters)';
}

/** Event timestamps count from the VMM's start (as Cloud Hypervisor's do), so they print as seconds. */
export function formatEvent(e: VmmEvent): string {
  const when = `${e.timestamp.secs}.${String(Math.floor(e.timestamp.nanos / 1e6)).padStart(3, '0')}s`;
  const props = e.properties === null || Object.keys(e.properties).length === 0 ? '' : ` ${JSON.stringify(e.properties)}`;
  return `${when} ${e.source} ${e.event}${props}`;
}

/** One line for a live snapshot's report: the guest-visible pause first, then how it got there. */
export function formatLiveSnapshot(r: LiveSnapshotSummary): string {
  const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
  const copied = r.rounds.map((x) => `${x.pages}`).join(' + ');
  const how = r.converged ? 'converged' : 'did not converge (the guest dirtied memory faster than it was copied)';
  return `snapshot ${r.destination}: guest paused ${r.pause_ms.toFixed(1)} ms for ${r.final_pages} pages and the device state; `
    + `${r.rounds.length} rounds while it ran (${copied} pages, ${how}); ${mib(r.memory_bytes_written)} of memory in ${(r.total_ms / 1000).toFixed(2)} s`;
}
