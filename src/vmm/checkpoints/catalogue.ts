/**
 * The named-snapshot catalogue of a VM (virsh snapshot-list), one JSON file written atomically
 * (temp + fsync + rename + directory fsync): after a crash it is the old or the new catalogue,
 * never a torn one. Entries are added only after the checkpoint they describe is complete on
 * disk, and removed before its files are, so every entry always points at usable files.
 *
 * Location: `<snapshot dir>/catalogue.json`; the snapshot dir is given by the request
 * (`snapshot_dir`) or defaults to `<folder of disk 0>/<stem of disk 0's base image>.snapshots`,
 * which stays the same as overlays are added on top (they are created next to the disk).
 */
import { readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import { CheckpointError, UnknownSnapshotError } from './errors.js';
import type { FrozenDisk } from './frozen.js';

export const CATALOGUE_FILE = 'catalogue.json';
const CATALOGUE_VERSION = 1;
export const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export type SnapshotKind = 'system' | 'disk-only';

export interface CatalogueEntry {
  name: string;
  /** ISO 8601 creation time. */
  created: string;
  kind: SnapshotKind;
  /** The snapshot that was current when this one was taken. */
  parent: string | null;
  description: string;
  /** VM state at the checkpoint: a revert leaves the VM running only if it was running. */
  vm_state: 'Running' | 'Paused';
  /** Memory + device state directory (system snapshots), relative to the snapshot dir. */
  state_dir: string | null;
  /** How long the guest was paused to take it (system) or its disk I/O held (disk-only), ms. */
  paused_ms: number;
  /** The frozen image of each writable disk, as it was at the checkpoint. */
  disks: FrozenDisk[];
}

/** An overlay this catalogue created (for a snapshot or a revert), with what it sits on. */
export interface OverlayRecord {
  disk: string;
  path: string;
  backing: string;
}

export interface CatalogueDoc {
  version: number;
  current: string | null;
  snapshots: CatalogueEntry[];
  overlays: OverlayRecord[];
}

export class Catalogue {
  private constructor(readonly dir: string, private doc: CatalogueDoc) {}

  get path(): string {
    return join(this.dir, CATALOGUE_FILE);
  }

  static async load(dir: string): Promise<Catalogue> {
    let text: string | null;
    try {
      text = await readFile(join(dir, CATALOGUE_FILE), 'utf8');
    } catch (e) {
      text = Catalogue.missing(dir, e);
    }
    return Catalogue.parse(dir, text);
  }

  /** The same, synchronously (a few KiB; for the API's GET handlers, which answer at once). */
  static loadSync(dir: string): Catalogue {
    let text: string | null;
    try {
      text = readFileSync(join(dir, CATALOGUE_FILE), 'utf8');
    } catch (e) {
      text = Catalogue.missing(dir, e);
    }
    return Catalogue.parse(dir, text);
  }

  private static missing(dir: string, e: unknown): null {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CheckpointError(`cannot read the snapshot catalogue ${join(dir, CATALOGUE_FILE)}: ${(e as Error).message}`);
  }

  private static parse(dir: string, text: string | null): Catalogue {
    if (text === null) return new Catalogue(dir, { version: CATALOGUE_VERSION, current: null, snapshots: [], overlays: [] });
    let doc: CatalogueDoc;
    try {
      doc = JSON.parse(text) as CatalogueDoc;
    } catch (e) {
      throw new CheckpointError(`snapshot catalogue ${join(dir, CATALOGUE_FILE)} is not valid JSON: ${(e as Error).message}`);
    }
    if (doc?.version !== CATALOGUE_VERSION || !Array.isArray(doc.snapshots) || !Array.isArray(doc.overlays)) {
      throw new CheckpointError(`snapshot catalogue ${join(dir, CATALOGUE_FILE)} is not a version ${CATALOGUE_VERSION} catalogue`);
    }
    return new Catalogue(dir, doc);
  }

  get current(): string | null {
    return this.doc.current;
  }

  get entries(): readonly CatalogueEntry[] {
    return this.doc.snapshots;
  }

  get overlays(): readonly OverlayRecord[] {
    return this.doc.overlays;
  }

  has(name: string): boolean {
    return this.doc.snapshots.some((s) => s.name === name);
  }

  get(name: string): CatalogueEntry {
    const e = this.doc.snapshots.find((s) => s.name === name);
    if (e === undefined) throw new UnknownSnapshotError(name, this.doc.snapshots.map((s) => s.name));
    return e;
  }

  /** Applies `change` to a copy and writes it; the in-memory catalogue changes only once durable. */
  async update(change: (doc: CatalogueDoc) => void): Promise<void> {
    const next = structuredClone(this.doc);
    change(next);
    await mkdir(this.dir, { recursive: true });
    await writeFileAtomic(this.path, `${JSON.stringify(next, null, 2)}\n`);
    this.doc = next;
  }
}
