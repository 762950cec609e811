import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawBackend } from '../../src/block/raw.js';
import { ImageLockedError, lockImage } from '../../src/block/lock.js';

/**
 * A second process taking QEMU-style image locks (what QEMU's file-posix does: shared OFD read
 * locks on byte 100+perm for held permissions and 200+perm for unshared ones, then F_OFD_GETLK
 * checks for the opposite bytes). Mode "hold-write" takes a writer's bytes and waits for stdin to
 * close; mode "try-write" exits 0 if a writer's bytes could be taken without conflict, 3 if not.
 */
const LOCKER = String.raw`
import fcntl, os, struct, sys
F_OFD_GETLK, F_OFD_SETLK = 36, 37
def flock(t, start): return struct.pack('hhqqi4x', t, 0, start, 1, 0)
mode, path = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR)
held, unshared = [0, 1, 2, 3], [1, 3]
for p in held: fcntl.fcntl(fd, F_OFD_SETLK, flock(fcntl.F_RDLCK, 100 + p))
for p in unshared: fcntl.fcntl(fd, F_OFD_SETLK, flock(fcntl.F_RDLCK, 200 + p))
conflict = False
for p in held:
    if struct.unpack('hhqqi4x', fcntl.fcntl(fd, F_OFD_GETLK, flock(fcntl.F_WRLCK, 200 + p)))[0] != fcntl.F_UNLCK: conflict = True
for p in unshared:
    if struct.unpack('hhqqi4x', fcntl.fcntl(fd, F_OFD_GETLK, flock(fcntl.F_WRLCK, 100 + p)))[0] != fcntl.F_UNLCK: conflict = True
if mode == 'try-write': sys.exit(3 if conflict else 0)
print('locked', flush=True)
sys.stdin.read()
`;

let dir: string;
let image: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsvmm-lock-'));
  image = join(dir, 'disk.raw');
  await writeFile(image, new Uint8Array(1 << 20));
});
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

function qemuImg(...args: string[]) {
  return spawnSync('qemu-img', args, { encoding: 'utf8' });
}

describe('disk image OFD locks', () => {
  it('refuses a second writable open in this process and names the holder', async () => {
    const a = await RawBackend.open(image, { lock: true });
    const err = await RawBackend.open(image, { lock: true }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ImageLockedError);
    const locked = err as ImageLockedError;
    expect(locked.code).toBe('EIMAGELOCKED');
    expect(locked.holders.map((h) => h.pid)).toContain(process.pid);
    expect(locked.message).toContain(`pid ${process.pid}`);
    await expect(RawBackend.open(image, { readOnly: true, lock: true })).rejects.toBeInstanceOf(ImageLockedError);
    await a.close();
    const b = await RawBackend.open(image, { lock: true });
    await b.close();
  });

  it('lets readers share the image and keeps writers out', async () => {
    const r1 = await RawBackend.open(image, { readOnly: true, lock: true });
    const r2 = await RawBackend.open(image, { readOnly: true, lock: true });
    await expect(RawBackend.open(image, { lock: true })).rejects.toBeInstanceOf(ImageLockedError);
    await r1.close();
    await r2.close();
  });

  it('a second locker in a child process is refused while we hold the image', async () => {
    const a = await RawBackend.open(image, { lock: true });
    expect(spawnSync('python3', ['-c', LOCKER, 'try-write', image]).status).toBe(3);
    await a.close();
    expect(spawnSync('python3', ['-c', LOCKER, 'try-write', image]).status).toBe(0);
  });

  it('names the child process that holds the image', async () => {
    const child = spawn('python3', ['-c', LOCKER, 'hold-write', image], { stdio: ['pipe', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    try {
      const err = await RawBackend.open(image, { lock: true }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(ImageLockedError);
      const locked = err as ImageLockedError;
      expect(locked.holders.map((h) => h.pid)).toEqual([child.pid]);
      expect(locked.message).toMatch(/python3 -c/);
    } finally {
      child.stdin.end();
      await new Promise((r) => child.once('exit', r));
    }
    const b = await RawBackend.open(image, { lock: true });
    await b.close();
  });

  it('a qemu write open fails while we hold the image, and works after', async () => {
    const a = await RawBackend.open(image, { lock: true });
    const write = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write 0 512', image], { encoding: 'utf8' });
    expect(write.stderr + write.stdout).toMatch(/Failed to get .*lock/i);
    await a.close();
    const again = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write 0 512', image], { encoding: 'utf8' });
    expect(again.status).toBe(0);
    expect(again.stderr + again.stdout).not.toMatch(/lock/i);
  });

  it('qemu-img info of a qcow2 image we hold for writing fails (raw info takes no locks in QEMU)', async () => {
    const qcow2 = join(dir, 'disk.qcow2');
    expect(qemuImg('create', '-q', '-f', 'qcow2', qcow2, '1M').status).toBe(0);
    const fh = await open(qcow2, 'r+');
    try {
      await lockImage(fh.fd, qcow2, 'write');
      const info = qemuImg('info', qcow2);
      expect(info.status).not.toBe(0);
      expect(info.stderr).toMatch(/Failed to get shared "write" lock/);
    } finally {
      await fh.close();
    }
    expect(qemuImg('info', qcow2).status).toBe(0);
  });

  it('a read-only holder still blocks qemu writes but not qemu-img info', async () => {
    const r = await RawBackend.open(image, { readOnly: true, lock: true });
    expect(qemuImg('info', image).status).toBe(0);
    const write = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write 0 512', image], { encoding: 'utf8' });
    expect(write.stderr + write.stdout).toMatch(/lock/i);
    await r.close();
  });
});
