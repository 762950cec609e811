/**
 * Boots guest-images/out/tiny.elf (and tiny.bzImage) under QEMU microvm with KVM and checks the
 * output formats the rest of the project's tests rely on (see guest-images/README.md).
 * QEMU is the oracle here: these tests pin down the guest before tsvmm exists to boot it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadline } from '../support/timing.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const ELF = join(ROOT, 'guest-images/out/tiny.elf');
const BZIMAGE = join(ROOT, 'guest-images/out/tiny.bzImage');
const BOOT64 = join(ROOT, 'guest-images/out/boot64');
const QEMU = 'qemu-system-x86_64';

// QEMU is the peer these tests compare with: its absence fails them (the kvm tier's hosts have it;
// .ci/run installs it), it never skips them.
try {
  execFileSync(QEMU, ['--version'], { stdio: 'ignore' });
} catch {
  throw new Error(`${QEMU} is not installed (apt-get install qemu-system-x86): the QEMU guest tests cannot run`);
}

interface Boot {
  /** All serial output, firmware escapes removed. */
  text: string;
  lines: string[];
  /** The guest's power-off status (QEMU's isa-debug-exit exits with (v << 1) | 1). */
  guestStatus: number | null;
  qemuStatus: number | null;
  firstLineMs: number;
}

interface BootOptions {
  kernel?: string;
  smp?: number;
  memory?: string;
  append: string;
  acpi?: boolean;
  machine?: string;
  extra?: string[];
  timeoutMs?: number;
  /** Stop QEMU once a line matching this appears (for workloads that run forever). */
  until?: RegExp;
  /** Called with the whole output so far, on every chunk. */
  onOutput?: (text: string) => void;
}

function boot(opts: BootOptions): Promise<Boot> {
  const machine = opts.machine ?? `microvm,acpi=${opts.acpi === false ? 'off' : 'on'}`;
  const args = [
    '-M', machine, '-enable-kvm', '-cpu', 'host', '-m', opts.memory ?? '128M',
    '-smp', String(opts.smp ?? 1), '-nographic', '-nodefaults', '-serial', 'stdio', '-no-reboot',
    '-device', 'isa-debug-exit,iobase=0xf4,iosize=4',
    '-kernel', opts.kernel ?? ELF, '-append', opts.append, ...(opts.extra ?? []),
  ];
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let firstLineMs = -1;
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? deadline(30_000));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (firstLineMs < 0 && out.includes('\n')) firstLineMs = performance.now() - started;
      opts.onOutput?.(out);
      if (opts.until && opts.until.test(out)) child.kill('SIGTERM');
    });
    child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString(); });
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      // Strip the firmware's terminal escapes (SeaBIOS under -M pc) before splitting.
      const text = out.replace(/\x1b\[[0-9;?]*[a-zA-Z]|\x1bc/g, '');
      const lines = text.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.length > 0);
      if (code === null && !opts.until) {
        reject(new Error(`QEMU killed after timeout; output:\n${text}\n${err}`));
        return;
      }
      const guestStatus = code !== null && code % 2 === 1 ? (code - 1) / 2 : null;
      resolve({ text, lines, guestStatus, qemuStatus: code, firstLineMs });
    });
  });
}

/** Sends HMP commands to QEMU's monitor socket; resolves with everything the monitor printed. */
async function monitor(socket: string, commands: string[], doneWhen?: RegExp): Promise<string> {
  const conn = createConnection(socket);
  await new Promise<void>((resolve, reject) => { conn.once('connect', resolve); conn.once('error', reject); });
  let text = '';
  conn.on('data', (d: Buffer) => { text += d.toString(); });
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  for (const c of commands) {
    conn.write(`${c}\n`);
    await sleep(100);
  }
  for (let i = 0; doneWhen && !doneWhen.test(text) && i < deadline(100); i++) {
    conn.write('info migrate\n');
    await sleep(100);
  }
  conn.end();
  return text;
}

/**
 * Waits until a QEMU started with -incoming has loaded the migrated state (`info status` no longer
 * says inmigrate): a `cont` sent before that is lost when the source was stopped.
 */
async function incomingLoaded(socket: string): Promise<void> {
  const giveUpAt = Date.now() + deadline(10_000);
  for (;;) {
    const text = existsSync(socket) ? await monitor(socket, ['info status']).catch(() => '') : '';
    if (/VM status: /.test(text) && !/inmigrate/.test(text)) return;
    if (Date.now() > giveUpAt) throw new Error(`QEMU at ${socket} did not finish loading the incoming migration`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The disk pattern tiny writes: the 8-byte LE word at byte offset o is o ^ 0x594e495400000000. */
function expectedPattern(bytes: number): Buffer {
  const buf = Buffer.alloc(bytes);
  for (let o = 0; o < bytes; o += 8) buf.writeBigUInt64LE(BigInt(o) ^ 0x594e495400000000n, o);
  return buf;
}

describe('tiny guest kernel under QEMU microvm', () => {
  let dir = '';

  beforeAll(() => {
    execFileSync('make', ['-s', '-C', join(ROOT, 'guest-images')], { stdio: 'inherit' });
    dir = mkdtempSync(join(tmpdir(), 'tiny-guest-'));
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('boots on 1 CPU: exact banner, ticks, exit status', async () => {
    const append = 'tiny.ticks=3 tiny.tick_ms=20 tiny.exit=7';
    const r = await boot({ smp: 1, append });
    expect(r.lines[0]).toBe(`tiny: boot=pvh cpus=1 mem=128MiB cmdline="${append}"`);
    expect(r.lines).toContain('tick 1');
    expect(r.lines).toContain('tick 3');
    expect(r.lines).not.toContain('tick 4');
    expect(r.lines.at(-1)).toBe('tiny: exit 7');
    expect(r.guestStatus).toBe(7);
    process.stderr.write(`tiny: QEMU start to first serial line ${r.firstLineMs.toFixed(1)} ms\n`);
  });

  it('boots on 2 CPUs: the AP comes up and its counter advances', async () => {
    const r = await boot({ smp: 2, append: 'tiny.ticks=3 tiny.tick_ms=20' });
    expect(r.lines[0]).toMatch(/^tiny: boot=pvh cpus=2 mem=128MiB cmdline="/);
    expect(r.lines).toContain('tiny: cpu1 up');
    const aps = r.lines.filter((l) => l.startsWith('tick ')).map((l) => {
      const m = /^tick (\d+) ap=(\d+)$/.exec(l);
      expect(m, l).not.toBeNull();
      return BigInt(m![2]!);
    });
    expect(aps).toHaveLength(3);
    expect(aps[2]! > aps[0]!).toBe(true);
    expect(r.guestStatus).toBe(0);
  });

  it('finds CPUs through the MP table when ACPI is off', async () => {
    const r = await boot({ smp: 2, acpi: false, append: 'x' });
    expect(r.lines[0]).toMatch(/^tiny: boot=pvh cpus=2 /);
    expect(r.lines).toContain('tiny: cpu1 up');
    expect(r.guestStatus).toBe(0);
  });

  it('runs the memory test and the interrupt self-test', async () => {
    const r = await boot({ smp: 1, append: 'tiny.irqtest tiny.memtest=32' });
    expect(r.lines).toContain('tiny: irq ok');
    expect(r.lines).toContain('memtest: filled 32 MiB');
    expect(r.lines).toContain('memtest: verify ok 32 MiB');
    expect(r.guestStatus).toBe(0);
  });

  it('keeps verifying with tiny.memtest_loop and interleaves ticks', async () => {
    const r = await boot({
      smp: 1, append: 'tiny.memtest=8 tiny.memtest_loop tiny.ticks tiny.tick_ms=10', until: /memtest: pass 3 ok\n[^]*tick \d+\n/,
    });
    expect(r.lines).toContain('memtest: pass 1 ok');
    expect(r.lines).toContain('memtest: pass 3 ok');
    expect(r.lines.some((l) => /^tick \d+$/.test(l))).toBe(true);
  });

  it('snapshot/restore (QEMU migration to a file): ticks and AP counters continue', async () => {
    const state = join(dir, 'vmstate.bin');
    const append = 'tiny.ticks=1000 tiny.tick_ms=20';
    const src = join(dir, 'src.sock');
    const dst = join(dir, 'dst.sock');
    let saved = false;
    const before = boot({
      smp: 2, append, extra: ['-monitor', `unix:${src},server,nowait`],
      onOutput: (text) => {
        if (saved || !/tick 5 ap=\d+\n/.test(text)) return;
        saved = true;
        void monitor(src, ['stop', `migrate "exec:cat > ${state}"`], /Migration status: completed/)
          .then(() => monitor(src, ['quit']));
      },
    });
    const r1 = await before;
    const after = boot({
      smp: 2, append, extra: ['-incoming', `exec:cat ${state}`, '-monitor', `unix:${dst},server,nowait`],
      until: /tick \d+ ap=\d+\n[^]*tick \d+ ap=\d+\n[^]*tick \d+ ap=\d+\n/,
    });
    await incomingLoaded(dst);
    await monitor(dst, ['cont']);
    const r2 = await after;
    // The guest may have been stopped mid-line: the two outputs joined must read as one run.
    const joined = (r1.text + r2.text).split('\n');
    const ticks = joined.flatMap((l) => {
      const m = /^tick (\d+) ap=(\d+)$/.exec(l);
      return m ? [{ n: Number(m[1]), ap: BigInt(m[2]!) }] : [];
    });
    const afterRestore = r2.text.split('\n').filter((l) => /^tick \d+ ap=\d+$/.test(l));
    expect(afterRestore.length).toBeGreaterThanOrEqual(3);
    expect(ticks.length).toBeGreaterThanOrEqual(8);
    ticks.forEach((t, i) => {
      expect(t.n).toBe(i + 1);
      if (i > 0) expect(t.ap >= ticks[i - 1]!.ap).toBe(true);
    });
    expect(r2.text).not.toContain('tiny: boot=');
  });

  it('reports a ring-3 exception with vector and RIP, then powers off with status 3', async () => {
    const r = await boot({ append: 'tiny.fault=ud' });
    expect(r.lines.at(-1)).toMatch(/^tiny: exception 6 rip=0x[0-9a-f]+ err=0x0 /);
    expect(r.guestStatus).toBe(3);
  });

  it('boots the bzImage through its real-mode setup (qboot) as boot=linux', async () => {
    const r = await boot({ kernel: BZIMAGE, smp: 2, append: 'tiny.exit=0' });
    expect(r.lines[0]).toBe('tiny: boot=linux cpus=2 mem=128MiB cmdline="tiny.exit=0"');
    expect(r.lines).toContain('tiny: cpu1 up');
    expect(r.guestStatus).toBe(0);
  });

  it('boots the bzImage through its 64-bit entry (load address + 0x200), as tsvmm will', () => {
    // boot64 is a minimal KVM loader (guest-images/tools/boot64.c); its exit status is the guest's.
    let status = 0;
    let out = '';
    try {
      out = execFileSync(BOOT64, [BZIMAGE, 'tiny.ticks=2 tiny.tick_ms=10 tiny.exit=5', '64'], { encoding: 'utf8', timeout: deadline(30_000) });
    } catch (e) {
      const err = e as { status?: number; stdout?: string };
      status = err.status ?? -1;
      out = err.stdout ?? '';
    }
    const lines = out.split('\n').filter((l) => l.length > 0);
    expect(lines[0]).toBe('tiny: boot=linux cpus=1 mem=64MiB cmdline="tiny.ticks=2 tiny.tick_ms=10 tiny.exit=5"');
    expect(lines).toContain('tick 2');
    expect(lines.at(-1)).toBe('tiny: exit 5');
    expect(status).toBe(5);
  });

  it('virtio-blk: writes the pattern, reads back, and the CRCs match the host file', async () => {
    const disk = join(dir, 'disk.raw');
    const noise = Buffer.alloc(8 << 20);
    for (let i = 0; i < noise.length; i += 4) noise.writeUInt32LE((i * 2654435761) >>> 0, i);
    writeFileSync(disk, noise);
    const r = await boot({
      smp: 2, acpi: false, memory: '256M', append: 'tiny.blk=write:4,read:8,flush,seqread:8,seqwrite:4,randread:64',
      extra: ['-global', 'virtio-mmio.force-legacy=false',
        '-drive', `file=${disk},format=raw,if=none,id=d0`, '-device', 'virtio-blk-device,drive=d0'],
    });
    const after = readFileSync(disk);
    expect(after.subarray(0, 4 << 20).equals(expectedPattern(4 << 20))).toBe(true);
    expect(after.subarray(4 << 20).equals(noise.subarray(4 << 20))).toBe(true);
    const hex = (n: number): string => n.toString(16).padStart(8, '0');
    expect(r.lines).toContain(`blk: write 4 MiB ok crc=${hex(crc32(after.subarray(0, 4 << 20)))}`);
    expect(r.lines).toContain(`blk: read 8 MiB crc=${hex(crc32(after.subarray(0, 8 << 20)))}`);
    expect(r.lines).toContain('blk: flush ok');
    expect(r.lines.find((l) => l.startsWith('blk: seqread '))).toMatch(/^blk: seqread 8388608 bytes [1-9]\d* us$/);
    expect(r.lines.find((l) => l.startsWith('blk: seqwrite '))).toMatch(/^blk: seqwrite 4194304 bytes [1-9]\d* us$/);
    expect(r.lines.find((l) => l.startsWith('blk: randread '))).toMatch(/^blk: randread 262144 bytes [1-9]\d* us$/);
    expect(r.lines.at(-1)).toBe('tiny: exit 0');
    expect(r.guestStatus).toBe(0);
  });

  it('virtio-blk: a read-only disk refuses writes', async () => {
    const disk = join(dir, 'ro.raw');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    const r = await boot({
      acpi: false, append: 'tiny.blk=write:1',
      extra: ['-global', 'virtio-mmio.force-legacy=false',
        '-drive', `file=${disk},format=raw,if=none,id=d0,readonly=on`, '-device', 'virtio-blk-device,drive=d0'],
    });
    expect(r.lines).toContain('blk: ro');
    expect(r.guestStatus).toBe(1);
  });
});
