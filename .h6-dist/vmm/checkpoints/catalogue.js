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
export const CATALOGUE_FILE = 'catalogue.json';
const CATALOGUE_VERSION = 1;
export const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export class Catalogue {
    dir;
    doc;
    constructor(dir, doc) {
        this.dir = dir;
        this.doc = doc;
    }
    get path() {
        return join(this.dir, CATALOGUE_FILE);
    }
    static async load(dir) {
        let text;
        try {
            text = await readFile(join(dir, CATALOGUE_FILE), 'utf8');
        }
        catch (e) {
            text = Catalogue.missing(dir, e);
        }
        return Catalogue.parse(dir, text);
    }
    /** The same, synchronously (a few KiB; for the API's GET handlers, which answer at once). */
    static loadSync(dir) {
        let text;
        try {
            text = readFileSync(join(dir, CATALOGUE_FILE), 'utf8');
        }
        catch (e) {
            text = Catalogue.missing(dir, e);
        }
        return Catalogue.parse(dir, text);
    }
    static missing(dir, e) {
        if (e.code === 'ENOENT')
            return null;
        throw new CheckpointError(`cannot read the snapshot catalogue ${join(dir, CATALOGUE_FILE)}: ${e.message}`);
    }
    static parse(dir, text) {
        if (text === null)
            return new Catalogue(dir, { version: CATALOGUE_VERSION, current: null, snapshots: [], overlays: [] });
        let doc;
        try {
            doc = JSON.parse(text);
        }
        catch (e) {
            throw new CheckpointError(`snapshot catalogue ${join(dir, CATALOGUE_FILE)} is not valid JSON: ${e.message}`);
        }
        if (doc?.version !== CATALOGUE_VERSION || !Array.isArray(doc.snapshots) || !Array.isArray(doc.overlays)) {
            throw new CheckpointError(`snapshot catalogue ${join(dir, CATALOGUE_FILE)} is not a version ${CATALOGUE_VERSION} catalogue`);
        }
        return new Catalogue(dir, doc);
    }
    get current() {
        return this.doc.current;
    }
    get entries() {
        return this.doc.snapshots;
    }
    get overlays() {
        return this.doc.overlays;
    }
    has(name) {
        return this.doc.snapshots.some((s) => s.name === name);
    }
    get(name) {
        const e = this.doc.snapshots.find((s) => s.name === name);
        if (e === undefined)
            throw new UnknownSnapshotError(name, this.doc.snapshots.map((s) => s.name));
        return e;
    }
    /** Applies `change` to a copy and writes it; the in-memory catalogue changes only once durable. */
    async update(change) {
        const next = structuredClone(this.doc);
        change(next);
        await mkdir(this.dir, { recursive: true });
        await writeFileAtomic(this.path, `${JSON.stringify(next, null, 2)}\n`);
        this.doc = next;
    }
}
//# sourceMappingURL=catalogue.js.map