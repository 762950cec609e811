#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { TsvmmError } from '../errors.js';
import { Qcow2Image } from '../block/qcow2/image.js';
import { applySnapshot, createSnapshot, deleteSnapshot, listSnapshots } from '../block/qcow2/snapshots.js';
import type { RepairMode } from '../block/qcow2/check.js';
import { parseSize } from '../util/size.js';
import { layersOf } from '../block/chain/walk.js';
import { openForTool, parseFormat } from '../img/format.js';
import { runCheck, CHECK_NOT_COMPLETED } from '../img/check.js';
import { commitImage } from '../img/commit.js';
import { compareImages } from '../img/compare.js';
import { convertImage } from '../img/convert.js';
import { createImage, parseOptions } from '../img/create.js';
import { formatInfo, imageInfo } from '../img/info.js';
import { withWriteLock } from '../img/lock.js';
import { formatMapHuman, formatMapJson, mapImage } from '../img/map.js';
import { rebaseImage } from '../img/rebase.js';
import { resizeImage } from '../img/resize.js';
import { formatSnapshotTable, snapshotJson } from '../img/snapshot.js';

/**
 * tsvmm-img: qemu-img's verbs and flags for raw and qcow2 images, on tsvmm's own engine.
 * Exit status: 0 success; 1 failure (one line on stderr); check and compare use qemu-img's codes.
 */

export interface ImgIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

class UsageError extends TsvmmError {
  constructor(message: string) {
    super('EUSAGE', message);
  }
}

const list = (v: unknown): string[] => (v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)]);

function jsonOutput(argv: Record<string, unknown>): boolean {
  const o = argv['output'];
  if (o === undefined || o === 'human') return false;
  if (o === 'json') return true;
  throw new UsageError(`--output=${String(o)}: use json or human`);
}

/**
 * `resize FILE -1G`: as qemu-img does, the size is taken off the end of the command line before
 * the options are parsed, since a negative size would otherwise read as a flag.
 */
function takeResizeSize(argv: string[]): { argv: string[]; size: string | null } {
  if (argv[0] !== 'resize' || argv.length < 3 || argv.includes('--help')) return { argv, size: null };
  return { argv: argv.slice(0, -1), size: argv.at(-1)! };
}

async function run(argvIn: string[], io: ImgIo): Promise<number> {
  const { argv, size: resizeSize } = takeResizeSize(argvIn);
  let code = 0;
  const set = (c: number): void => {
    code = c;
  };
  const parser: Argv = yargs(argv)
    .scriptName('tsvmm-img')
    .usage('$0 <command> [options]')
    .exitProcess(false)
    .strict()
    .help()
    .version(false)
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    })
    .command('create <file> [size]', 'create a raw or qcow2 image', (y) => y
      .option('f', { type: 'string', default: 'raw', describe: 'format: raw or qcow2' })
      .option('b', { type: 'string', describe: 'backing file (qcow2)' })
      .option('F', { type: 'string', describe: 'backing file format' })
      .option('o', { type: 'string', describe: 'cluster_size=N,refcount_bits=N,compat=0.10|1.1' })
      .option('q', { type: 'boolean' }), async (a) => {
      const format = parseFormat(a['f'], '-f') ?? 'raw';
      await createImage({
        format, file: String(a['file']), size: a['size'] === undefined ? null : parseSize(String(a['size']), 'size'),
        backing: (a['b'] as string | undefined) ?? null, backingFormat: parseFormat(a['F'], '-F'), options: parseOptions(list(a['o'])),
      });
    })
    .command('info <file>', 'show image information', (y) => y
      .option('f', { type: 'string' })
      .option('output', { type: 'string' })
      .option('backing-chain', { type: 'boolean' }), async (a) => {
      const json = jsonOutput(a);
      const image = await openForTool(String(a['file']), true, parseFormat(a['f'], '-f'));
      try {
        const layers = a['backing-chain'] ? layersOf(image) : [image];
        const infos = [];
        for (const [i, layer] of layers.entries()) {
          infos.push(await imageInfo(layer, i === 0 ? String(a['file']) : layer.path));
        }
        if (json) io.out(JSON.stringify(a['backing-chain'] ? infos : infos[0], null, 4) + '\n');
        else io.out(infos.map(formatInfo).join('\n'));
      } finally {
        await image.close();
      }
    })
    .command('check <file>', 'check (and repair) a qcow2 image', (y) => y
      .option('f', { type: 'string' })
      .option('output', { type: 'string' })
      .option('r', { type: 'string', choices: ['leaks', 'all'] })
      .option('q', { type: 'boolean' }), async (a) => {
      const json = jsonOutput(a);
      const file = String(a['file']);
      const repair = (a['r'] as RepairMode | undefined) ?? 'none';
      const go = async (): Promise<void> => {
        let image;
        try {
          image = await openForTool(file, repair === 'none', parseFormat(a['f'], '-f'));
        } catch (err) {
          set(CHECK_NOT_COMPLETED);
          throw err;
        }
        try {
          const outcome = await runCheck(image, file, repair);
          io.out(json ? JSON.stringify(outcome.json, null, 4) + '\n' : outcome.text);
          set(outcome.exitCode);
        } finally {
          await image.close();
        }
      };
      await (repair === 'none' ? go() : withWriteLock(file, go));
    })
    .command('snapshot <file>', 'list, create, apply or delete internal snapshots', (y) => y
      .option('l', { type: 'boolean', describe: 'list' })
      .option('c', { type: 'string', describe: 'create' })
      .option('a', { type: 'string', describe: 'apply' })
      .option('d', { type: 'string', describe: 'delete' })
      .option('q', { type: 'boolean' }), async (a) => {
      const file = String(a['file']);
      const chosen = ['l', 'c', 'a', 'd'].filter((k) => a[k] !== undefined && a[k] !== false);
      if (chosen.length !== 1) throw new UsageError('snapshot: give exactly one of -l, -c NAME, -a NAME, -d NAME');
      const action = chosen[0]!;
      const work = async (): Promise<void> => {
        const image = await openForTool(file, action === 'l', 'qcow2');
        try {
          if (!(image instanceof Qcow2Image)) throw new UsageError(`${file}: not a qcow2 image`);
          if (action === 'l') {
            const snaps = await listSnapshots(image.meta);
            if (snaps.length > 0) io.out(formatSnapshotTable(snaps.map(snapshotJson)));
          } else if (action === 'c') await createSnapshot(image.meta, String(a['c']));
          else if (action === 'a') await applySnapshot(image.meta, String(a['a']));
          else await deleteSnapshot(image.meta, String(a['d']));
        } finally {
          await image.close();
        }
      };
      await (action === 'l' ? work() : withWriteLock(file, work));
    })
    .command('commit <file>', 'commit the image into its backing file (or BASE)', (y) => y
      .option('f', { type: 'string' })
      .option('b', { type: 'string', describe: 'base image further down the chain' })
      .option('d', { type: 'boolean', describe: 'keep the top image content' })
      .option('p', { type: 'boolean', describe: 'progress' })
      .option('q', { type: 'boolean' }), async (a) => {
      const file = String(a['file']);
      await withWriteLock(file, () => commitImage({ file, base: (a['b'] as string | undefined) ?? null, keepTop: Boolean(a['d']), progress: Boolean(a['p']) }));
    })
    .command('rebase <file>', 'change the backing file', (y) => y
      .option('f', { type: 'string' })
      .option('b', { type: 'string', demandOption: true, describe: 'new backing file ("" for none)' })
      .option('F', { type: 'string', describe: 'new backing file format' })
      .option('u', { type: 'boolean', describe: 'unsafe: only rewrite the header' })
      .option('p', { type: 'boolean' })
      .option('q', { type: 'boolean' }), async (a) => {
      const file = String(a['file']);
      await withWriteLock(file, () => rebaseImage({ file, backing: String(a['b']), backingFormat: parseFormat(a['F'], '-F'), unsafe: Boolean(a['u']), progress: Boolean(a['p']) }));
    })
    .command('resize <file>', 'change the virtual size: resize [--shrink] [-f FMT] FILE [+|-]SIZE', (y) => y
      .option('f', { type: 'string' })
      .option('shrink', { type: 'boolean', describe: 'allow making a raw image smaller' })
      .option('q', { type: 'boolean' }), async (a) => {
      const file = String(a['file']);
      if (resizeSize === null) throw new UsageError('resize: give FILE and SIZE (e.g. resize disk.qcow2 +10G)');
      await withWriteLock(file, () => resizeImage({ file, format: parseFormat(a['f'], '-f'), size: resizeSize, shrink: Boolean(a['shrink']) }));
      if (a['q'] !== true) io.out('Image resized.\n');
    })
    .command('convert <input> <output>', 'copy an image (through its chain) into a new raw or qcow2 image', (y) => y
      .option('f', { type: 'string' })
      .option('O', { type: 'string', default: 'raw' })
      .option('o', { type: 'string' })
      .option('c', { type: 'boolean', describe: 'compress the clusters (qcow2 output)' })
      .option('p', { type: 'boolean' })
      .option('q', { type: 'boolean' }), async (a) => {
      await convertImage({
        input: String(a['input']), inputFormat: parseFormat(a['f'], '-f'), output: String(a['output']),
        outputFormat: parseFormat(a['O'], '-O') ?? 'raw', options: parseOptions(list(a['o'])), progress: Boolean(a['p']),
        compress: Boolean(a['c']),
      });
    })
    .command('map <file>', 'show where each part of the disk is stored', (y) => y
      .option('f', { type: 'string' })
      .option('output', { type: 'string' }), async (a) => {
      const json = jsonOutput(a);
      const image = await openForTool(String(a['file']), true, parseFormat(a['f'], '-f'));
      try {
        const extents = await mapImage(image);
        io.out(json ? formatMapJson(extents) : formatMapHuman(image, extents, String(a['file'])));
      } finally {
        await image.close();
      }
    })
    .command('compare <a> <b>', 'compare the guest-visible content of two images', (y) => y
      .option('f', { type: 'string' })
      .option('F', { type: 'string' })
      .option('p', { type: 'boolean' })
      .option('q', { type: 'boolean' }), async (a) => {
      set(2);
      const left = await openForTool(String(a['a']), true, parseFormat(a['f'], '-f'));
      try {
        const right = await openForTool(String(a['b']), true, parseFormat(a['F'], '-F'));
        try {
          const r = await compareImages(left, right, Boolean(a['p']));
          if (r.sizeMismatch) io.out('Warning: Image size mismatch!\n');
          if (r.identical) {
            io.out('Images are identical.\n');
            set(0);
          } else {
            io.out(`Content mismatch at offset ${r.mismatchAt}!\n`);
            set(1);
          }
        } finally {
          await right.close();
        }
      } finally {
        await left.close();
      }
    })
    .demandCommand(1, 'give a command: create, info, check, snapshot, commit, rebase, resize, convert, map, compare');
  try {
    await parser.parseAsync();
    return code;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.err(`tsvmm-img: ${message.split('\n')[0]}\n`);
    return code !== 0 ? code : 1;
  }
}

export async function main(argv: string[], io: ImgIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) }): Promise<number> {
  return run(argv, io);
}

function invokedDirectly(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  process.exitCode = await main(hideBin(process.argv));
}
