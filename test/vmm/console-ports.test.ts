/** The host ends of the serial port and the virtio console (src/vmm/console-ports.ts), no VM. */
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsolePort } from '../../src/vmm/console-ports.js';
import type { PortConfig, VmConfig } from '../../src/vmm/config.js';

let dir: string;
const ports: ConsolePort[] = [];
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'tsvmm-ports-')); });
afterEach(async () => {
  for (const p of ports.splice(0)) await p.close();
  rmSync(dir, { recursive: true, force: true });
});

const config = (serial: PortConfig, console: PortConfig): VmConfig => ({
  cpus: { boot_vcpus: 1, max_vcpus: 1 }, memory: { size: 1 << 20 }, payload: { kernel: '/k' }, disks: [], serial, console,
});

function port(name: 'serial' | 'console', input: (b: Uint8Array) => void = () => {}): ConsolePort {
  const p = new ConsolePort(name, input);
  ports.push(p);
  return p;
}

describe('ConsolePort', () => {
  it('file=PATH: each port writes its own file', async () => {
    const c = config({ mode: 'File', file: join(dir, 'serial.log') }, { mode: 'File', file: join(dir, 'hvc0.log') });
    port('serial').output(c)(Buffer.from('from ttyS0\n'));
    port('console').output(c)(Buffer.from('from hvc0\n'));
    for (const p of ports.splice(0)) await p.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(readFileSync(join(dir, 'serial.log'), 'utf8')).toBe('from ttyS0\n');
    expect(readFileSync(join(dir, 'hvc0.log'), 'utf8')).toBe('from hvc0\n');
  });

  it('an API console attaches only to a port in socket mode, one client per port, and gets its output and input', () => {
    const typed: string[] = [];
    const c = config({ mode: 'Null' }, { mode: 'Socket' });
    expect(() => port('serial').attach(c)).toThrow(/the serial port is not in socket mode: start the VM with --serial socket/);
    const hvc = port('console', (b) => typed.push(Buffer.from(b).toString()));
    const out = hvc.output(c);
    const a = hvc.attach(c);
    expect(() => hvc.attach(c)).toThrow(/a console is already attached to the virtio console/);
    const seen: string[] = [];
    a.onOutput((b) => seen.push(Buffer.from(b).toString()));
    out(Buffer.from('guest'));
    a.input(Buffer.from('user'));
    expect(seen).toEqual(['guest']);
    expect(typed).toEqual(['user']);
    a.detach();
    expect(() => hvc.attach(c).detach()).not.toThrow();
  });

  it('pty: a terminal of its own, reported as the port\'s file in vm.info, carrying output both ways', async () => {
    const typed: number[] = [];
    const c = config({ mode: 'Off' }, { mode: 'Pty' });
    const hvc = port('console', (b) => typed.push(...b));
    await hvc.open(c);
    const reported = hvc.reported(c);
    expect(reported).toEqual({ mode: 'Pty', file: expect.stringMatching(/^\/dev\/pts\/\d+$/) });
    const user = openSync(reported.file!, 'r+');
    try {
      hvc.output(c)(Buffer.from('login: '));
      const buf = Buffer.alloc(32);
      expect(buf.subarray(0, readSync(user, buf)).toString()).toBe('login: ');
    } finally {
      closeSync(user);
    }
    // Another port mode closes the terminal.
    await hvc.open(config({ mode: 'Off' }, { mode: 'Null' }));
    expect(hvc.reported(config({ mode: 'Off' }, { mode: 'Null' }))).toEqual({ mode: 'Null' });
  });
});
