import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CATALOGUE_FILE, Catalogue, SNAPSHOT_NAME, type CatalogueEntry } from '../../../src/vmm/checkpoints/catalogue.js';
import { writeFileAtomic } from '../../../src/vmm/checkpoints/atomic-file.js';

let dir: string;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'tsvmm-cat-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const entry = (name: string, parent: string | null): CatalogueEntry => ({
  name, created: new Date(0).toISOString(), kind: 'system', parent, description: '', vm_state: 'Running',
  state_dir: name, paused_ms: 1, disks: [],
});

describe('Catalogue', () => {
  it('starts empty, persists every update, and reloads the same content', async () => {
    const cat = await Catalogue.load(join(dir, 'snaps'));
    expect(cat.entries).toEqual([]);
    await cat.update((d) => { d.snapshots.push(entry('a', null)); d.current = 'a'; });
    await cat.update((d) => { d.snapshots.push(entry('b', 'a')); d.current = 'b'; });
    const again = await Catalogue.load(join(dir, 'snaps'));
    expect(again.entries.map((e) => e.name)).toEqual(['a', 'b']);
    expect(again.current).toBe('b');
    expect(again.get('b').parent).toBe('a');
    // No temporary file is left next to it.
    expect(readdirSync(join(dir, 'snaps'))).toEqual([CATALOGUE_FILE]);
  });

  it('keeps the in-memory catalogue unchanged when the write fails', async () => {
    const cat = await Catalogue.load(join(dir, 'snaps'));
    await cat.update((d) => { d.snapshots.push(entry('a', null)); });
    rmSync(join(dir, 'snaps'), { recursive: true });
    writeFileSync(join(dir, 'snaps'), 'not a directory');
    await expect(cat.update((d) => { d.snapshots.push(entry('b', 'a')); })).rejects.toThrow();
    expect(cat.entries.map((e) => e.name)).toEqual(['a']);
  });

  it('names unknown snapshots with the ones that exist', async () => {
    const cat = await Catalogue.load(dir);
    await cat.update((d) => { d.snapshots.push(entry('one', null)); });
    expect(() => cat.get('two')).toThrow(/no snapshot named "two" \(known: one\)/);
  });

  it('refuses a torn or foreign file instead of guessing', async () => {
    writeFileSync(join(dir, CATALOGUE_FILE), '{"version": 1, "snapshots": [');
    await expect(Catalogue.load(dir)).rejects.toThrow(/not valid JSON/);
    writeFileSync(join(dir, CATALOGUE_FILE), '{"version": 9}');
    await expect(Catalogue.load(dir)).rejects.toThrow(/not a version 1 catalogue/);
  });

  it('accepts names that are safe file names only', () => {
    for (const ok of ['S1', 'before-upgrade', 'v1.2_final']) expect(SNAPSHOT_NAME.test(ok)).toBe(true);
    for (const bad of ['', '../x', 'a/b', '.hidden', 'x'.repeat(65), 'sp ace']) expect(SNAPSHOT_NAME.test(bad)).toBe(false);
  });
});

describe('writeFileAtomic', () => {
  it('replaces the file whole and leaves no temporary file', async () => {
    const p = join(dir, 'f.json');
    await writeFileAtomic(p, 'old');
    await writeFileAtomic(p, 'new');
    expect(readFileSync(p, 'utf8')).toBe('new');
    expect(readdirSync(dir)).toEqual(['f.json']);
    expect(existsSync(`${p}.tmp-${process.pid}`)).toBe(false);
  });
});
