#!/usr/bin/env node
// `npm run demo`: README's first quick-start command. Boots the bundled tiny kernel end to end
// (2 vCPUs, a memory test, 20 ticks, power-off) on /dev/kvm; on a host without /dev/kvm but with
// QEMU, the same command runs nested under QEMU's TCG (slowly, and says so), so a newcomer on such
// a machine sees a guest boot rather than an error.
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kvmMode, NO_KVM_MESSAGE, runNested } from './nested/run.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const command = [
  process.execPath, join(repo, 'dist/cli/tsvmm.js'), '--kernel', join(repo, 'guest-images/out/tiny.elf'),
  '--cpus', 'boot=2', '--memory', 'size=256M', '--serial', 'tty', '--cmdline', 'tiny.memtest=64 tiny.ticks=20',
  ...process.argv.slice(2),
];

const mode = kvmMode();
if (mode === 'none') {
  process.stderr.write(`npm run demo: ${NO_KVM_MESSAGE}\n`);
  process.exitCode = 2;
} else if (mode === 'direct') {
  const child = spawn(command[0], command.slice(1), { stdio: 'inherit' });
  child.on('exit', (code, signal) => { process.exitCode = code ?? (signal ? 128 : 1); });
} else {
  process.stderr.write(
    'npm run demo: this host has no /dev/kvm, so the demo runs inside a QEMU TCG VM that offers KVM ' +
      '(nested; 10-30x slower than a KVM host, about a minute)\n',
  );
  process.exitCode = await runNested(command, { cwd: repo });
}
