import type { SnapshotInfo } from '../block/qcow2/snapshots.js';

export function snapshotJson(s: SnapshotInfo): Record<string, number | string> {
  const out: Record<string, number | string> = {
    'vm-clock-nsec': s.vmClockNsec % 1e9,
    name: s.name,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
    id: s.id,
    'vm-state-size': s.vmStateSize,
  };
  if (s.extra.byteLength >= 24) out['icount'] = Number(new DataView(s.extra.buffer, s.extra.byteOffset).getBigUint64(16, false));
  return out;
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

/** `qemu-img snapshot -l` output. */
export function formatSnapshotTable(list: Record<string, number | string>[]): string {
  const lines = ['Snapshot list:', 'ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT'];
  for (const s of list) {
    const d = new Date(Number(s['date-sec']) * 1000);
    const p2 = (n: number): string => String(n).padStart(2, '0');
    const date = `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
    const clockSec = Number(s['vm-clock-sec']);
    const clock = `${p2(Math.floor(clockSec / 3600))}:${p2(Math.floor(clockSec / 60) % 60)}:${p2(clockSec % 60)}.${String(Math.floor(Number(s['vm-clock-nsec']) / 1e6)).padStart(3, '0')}`;
    const size = `${String(s['vm-state-size'])} B`;
    lines.push(`${pad(String(s['id']), 10)}${pad(String(s['name']), 18)}${pad(size, 7, true)} ${date} ${clock} ${pad(String(s['icount'] ?? ''), 10, true)}`);
  }
  return lines.join('\n') + '\n';
}
