/**
 * Network namespaces for tests that make taps and addresses: `ip netns add` makes one, and
 * enter() moves this process's main thread into it with setns(2), so the sockets it opens and
 * the processes it spawns (libuv forks from this thread) are all inside, and the host's own
 * network never sees the test's interfaces. leave() goes back.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { koffi, libc } from '../../src/sys/libc-handle.js';

const CLONE_NEWNET = 0x4000_0000;
const setns = libc.func('int setns(int fd, int nstype)');

function enterNamespace(fd: number, what: string): void {
  if ((setns(fd, CLONE_NEWNET) as number) !== 0) throw new Error(`setns(${what}) failed: errno ${koffi.errno()}`);
}

export class NetNamespace {
  private home: number | undefined;

  private constructor(readonly name: string) {}

  /** A new namespace `name` (an old one of that name is replaced) with its loopback up. */
  static create(name: string): NetNamespace {
    new NetNamespace(name).remove();
    execFileSync('ip', ['netns', 'add', name]);
    execFileSync('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
    return new NetNamespace(name);
  }

  /** Moves this thread into the namespace until leave(). */
  enter(): void {
    if (this.home !== undefined) return;
    this.home = openSync('/proc/thread-self/ns/net', 'r');
    const fd = openSync(`/run/netns/${this.name}`, 'r');
    try {
      enterNamespace(fd, this.name);
    } finally {
      closeSync(fd);
    }
  }

  leave(): void {
    if (this.home === undefined) return;
    try {
      enterNamespace(this.home, 'the original namespace');
    } finally {
      closeSync(this.home);
      this.home = undefined;
    }
  }

  /** Leaves it (if inside) and deletes it; its interfaces go with it. */
  remove(): void {
    this.leave();
    try {
      execFileSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
    } catch { /* already gone */ }
  }
}
