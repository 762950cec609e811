/** Checkpoint disk lists and the checks a restore makes before it touches KVM. */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { diskIdentity } from '../../../src/vmm/disk-identity.js';
import { CHECKPOINT_DISKS_FILE, readCheckpointDisks, restoreCheckpoint, type CheckpointDisks } from '../../../src/vmm/checkpoints/system.js';
import { pattern, tempDir } from '../../block/qcow2/helpers.js';

let t: ReturnType<typeof tempDir>;
beforeEach(() => { t = tempDir(); });
afterEach(() => t.cleanup());

const noHooks = (): never => { throw new Error('restore must not get this far'); };

async function checkpointOf(image: string): Promise<{ dir: string; disks: CheckpointDisks }> {
  const dir = join(t.dir, 'ck');
  mkdirSync(dir);
  const disks: CheckpointDisks = { version: 1, disks: [{ id: 'disk0', path: image, format: 'raw', size: 1 << 20, identity: await diskIdentity(image) }] };
  writeFileSync(join(dir, CHECKPOINT_DISKS_FILE), JSON.stringify(disks));
  return { dir, disks };
}

describe('checkpoint disk lists', () => {
  it('reads what was written, null for a plain snapshot, and refuses a damaged list', async () => {
    const image = join(t.dir, 'f.raw');
    writeFileSync(image, pattern(1 << 20, 1));
    const { dir, disks } = await checkpointOf(image);
    expect(await readCheckpointDisks(dir)).toEqual(disks);
    expect(await readCheckpointDisks(t.dir)).toBeNull();
    writeFileSync(join(dir, CHECKPOINT_DISKS_FILE), '{"version": 1, "disks": [{"id": 3}]}');
    await expect(readCheckpointDisks(dir)).rejects.toThrow(/not a version 1 checkpoint disk list/);
  });
});

describe('restoreCheckpoint', () => {
  it('refuses a frozen image that changed, before creating any overlay', async () => {
    const image = join(t.dir, 'f.raw');
    writeFileSync(image, pattern(1 << 20, 1));
    const { dir, disks } = await checkpointOf(image);
    writeFileSync(image, pattern(1 << 20, 2));
    const before = readdirSync(t.dir).sort();
    await expect(restoreCheckpoint({ source_url: pathToFileURL(dir).href }, disks, noHooks))
      .rejects.toThrow(/is not the image the snapshot was taken with/);
    expect(readdirSync(t.dir).sort()).toEqual(before);
  });

  it('refuses an overlay name for a disk the checkpoint does not have', async () => {
    const image = join(t.dir, 'f.raw');
    writeFileSync(image, pattern(1 << 20, 1));
    const { dir, disks } = await checkpointOf(image);
    await expect(restoreCheckpoint({ source_url: pathToFileURL(dir).href, disk_paths: { disk9: join(t.dir, 'x.qcow2') } }, disks, noHooks))
      .rejects.toThrow(/no writable disk "disk9"/);
    expect(existsSync(join(t.dir, 'x.qcow2'))).toBe(false);
  });
});
