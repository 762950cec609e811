import { readFile, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/snapshot/errors.js';
import { findLeftovers, recoverSnapshotDir } from '../../src/snapshot/leftovers.js';
import { readSnapshot } from '../../src/snapshot/reader.js';
import { SimulatedCrash, WRITE_STEPS, writeSnapshot, type WriteStep } from '../../src/snapshot/writer.js';
import { READ_OPTIONS, MiB, patternedRam, tempRoot, testInput } from './helpers.js';

const opts = READ_OPTIONS;
const SIZE = 4 * MiB;
const OLD_TIME = new Date('2026-01-01T00:00:00Z');
const NEW_TIME = new Date('2026-02-02T00:00:00Z');
const oldRam = patternedRam(SIZE, 1);
const newRam = patternedRam(SIZE, 2);
let root: string;
beforeAll(async () => { root = await tempRoot(); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

/** Which complete snapshot `dir` holds: 'old' or 'new', checked down to the memory bytes. */
async function whichSnapshot(dir: string): Promise<'old' | 'new'> {
  const snap = await readSnapshot(dir, opts);
  const created = snap.document.created;
  const which = created === OLD_TIME.toISOString() ? 'old' : created === NEW_TIME.toISOString() ? 'new' : undefined;
  expect(which, `unexpected snapshot created at ${created}`).toBeDefined();
  const bytes = await readFile(snap.regions[0]!.path);
  expect(Buffer.compare(bytes, Buffer.from(which === 'old' ? oldRam : newRam))).toBe(0);
  return which!;
}

const failAt = (target: WriteStep, error: Error) => (step: WriteStep): void => {
  if (step === target) throw error;
};

/** Steps at or after the commit point (the rename of the new directory into place). */
const committedBefore = (step: WriteStep): boolean => WRITE_STEPS.indexOf(step) > WRITE_STEPS.indexOf('move-new-in');

describe.each([true, false])('crash before each write step (replacing an existing snapshot: %s)', (replacing) => {
  const steps = WRITE_STEPS.filter((s) => replacing || (s !== 'move-old-aside' && s !== 'remove-old'));

  it.each(steps)('crash before %s leaves the old or the new snapshot, readable or recoverable', async (step) => {
    const dir = join(root, `crash-${replacing}-${step}`);
    if (replacing) await writeSnapshot(dir, testInput(SIZE, [oldRam]), { created: OLD_TIME });
    await expect(writeSnapshot(dir, testInput(SIZE, [newRam]), { created: NEW_TIME, beforeStep: failAt(step, new SimulatedCrash(step)) }))
      .rejects.toBeInstanceOf(SimulatedCrash);

    let state: 'old' | 'new' | 'none';
    try {
      state = await whichSnapshot(dir);
    } catch (e) {
      expect(e).toBeInstanceOf(SnapshotError);
      const message = (e as SnapshotError).message;
      expect(message).toContain('does not exist');
      if (step === 'move-new-in' && replacing) expect(message).toMatch(/\.old-\d+-[0-9a-f]{8} holds the previous snapshot/);
      // Our own pid is alive; a real crash would have ended it.
      await recoverSnapshotDir(dir, { isWriterAlive: () => false });
      state = replacing ? await whichSnapshot(dir) : await readSnapshot(dir, opts).then(() => 'new' as const, () => 'none' as const);
    }
    const expected = committedBefore(step) || step === 'sync-parent' ? 'new' : replacing ? 'old' : 'none';
    expect(state).toBe(expected);
    await recoverSnapshotDir(dir, { isWriterAlive: () => false });
    expect(await findLeftovers(dir)).toEqual([]);

    // The next write in this process cleans up and succeeds.
    await writeSnapshot(dir, testInput(SIZE, [newRam]), { created: NEW_TIME });
    expect(await whichSnapshot(dir)).toBe('new');
  });

  it.each(steps)('an I/O error before %s is rolled back without recovery', async (step) => {
    const dir = join(root, `error-${replacing}-${step}`);
    if (replacing) await writeSnapshot(dir, testInput(SIZE, [oldRam]), { created: OLD_TIME });
    const promise = writeSnapshot(dir, testInput(SIZE, [newRam]), { created: NEW_TIME, beforeStep: failAt(step, new Error('EIO (injected)')) });
    if (step === 'remove-old') {
      await expect(promise).resolves.toMatchObject({ replaced: true }); // committed; the leftover is harmless
    } else {
      await expect(promise).rejects.toThrow('EIO (injected)');
    }
    const committed = committedBefore(step) || step === 'sync-parent';
    if (committed) expect(await whichSnapshot(dir)).toBe('new');
    else if (replacing) expect(await whichSnapshot(dir)).toBe('old');
    else await expect(readSnapshot(dir, opts)).rejects.toThrow(/does not exist$/);
    const tmp = (await findLeftovers(dir)).filter((l) => l.kind === 'tmp');
    expect(tmp).toEqual([]);
  });
});

describe('recoverSnapshotDir', () => {
  it('leaves a live writer alone', async () => {
    const dir = join(root, 'live');
    await writeSnapshot(dir, testInput(SIZE, [oldRam]), { created: OLD_TIME });
    await expect(writeSnapshot(dir, testInput(SIZE, [newRam]), { created: NEW_TIME, beforeStep: failAt('move-new-in', new SimulatedCrash('move-new-in')) }))
      .rejects.toBeInstanceOf(SimulatedCrash);
    expect(await recoverSnapshotDir(dir)).toEqual([]); // this process is alive: its directories stay
    expect((await readdir(root)).filter((n) => n.startsWith(`${basename(dir)}.`))).toHaveLength(2);
    const actions = await recoverSnapshotDir(dir, { isWriterAlive: () => false });
    expect(actions.join('\n')).toMatch(/restored .*\.old-.* to .*live/);
    expect(await whichSnapshot(dir)).toBe('old');
  });
});
