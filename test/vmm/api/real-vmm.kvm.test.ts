import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ApiClient } from '../../../src/vmm/api/client.js';
import { defineRouteContract } from './route-contract.js';
import { deadline } from '../../support/timing.js';

/**
 * KVM integration: the same black-box route contract, against the real `tsvmm` binary booting the
 * tiny guest. Needs /dev/kvm (the kvm tier), `npm run build` (dist/) and `npm run guest` (tiny.elf).
 */
const root = resolve(import.meta.dirname, '../../..');
const tsvmm = join(root, 'dist/cli/tsvmm.js');
const kernel = join(root, 'guest-images/out/tiny.elf');

async function startRealVmm(): Promise<{ socketPath: string; scratchDir: string; stop(): Promise<void> }> {
  const scratchDir = mkdtempSync(join(tmpdir(), 'tsvmm-api-kvm-'));
  const socketPath = join(scratchDir, 'api.sock');
  const child: ChildProcess = spawn(
    process.execPath,
    [tsvmm, '--kernel', kernel, '--cmdline', 'tiny.ticks tiny.tick_ms=10', '--serial', 'socket', '--api-socket', socketPath],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const client = new ApiClient(socketPath, deadline(5000));
  const giveUpAt = Date.now() + deadline(20_000);
  const giveUp = (why: string): never => {
    child.kill('SIGKILL');
    rmSync(scratchDir, { recursive: true, force: true });
    throw new Error(`${why}: ${stderr}`);
  };
  for (;;) {
    if (child.exitCode !== null) giveUp(`tsvmm exited with ${child.exitCode}`);
    try {
      if ((await client.info()).state === 'Running') break;
    } catch {
      // not listening yet, or the VM is not created yet
    }
    if (Date.now() > giveUpAt) giveUp("tsvmm's VM did not reach Running within 20 s");
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    socketPath,
    scratchDir,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        await client.shutdownVmm().catch(() => {});
        const timer = setTimeout(() => child.kill('SIGKILL'), deadline(5000));
        await exited;
        clearTimeout(timer);
      }
      rmSync(scratchDir, { recursive: true, force: true });
    },
  };
}

defineRouteContract('real tsvmm + tiny guest', startRealVmm);
