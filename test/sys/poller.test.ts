import { describe, expect, test } from 'vitest';
import { EventFd } from '../../src/sys/eventfd.js';
import { FdPoller } from '../../src/sys/poller.js';
import { until } from '../support/timing.js';


describe('FdPoller', () => {
  test('one poller serves many eventfds, more than libuv has pool threads', async () => {
    const poller = new FdPoller();
    const fds = Array.from({ length: 12 }, () => EventFd.create({ nonBlocking: true }));
    const hits = fds.map(() => 0);
    fds.forEach((e, i) => poller.add(e.fd, () => { if (e.read() > 0n) hits[i]! += 1; }));
    for (const [i, e] of fds.entries()) {
      e.write(1n);
      await until(() => hits[i] === 1);
    }
    fds[3]!.write(5n);
    fds[9]!.write(1n);
    await until(() => hits[3] === 2 && hits[9] === 2);
    expect(hits.reduce((a, b) => a + b)).toBe(14);
    poller.close();
    for (const e of fds) e.close();
  });

  test('a removed fd is no longer reported and fds can be added while it polls', async () => {
    const poller = new FdPoller();
    const a = EventFd.create({ nonBlocking: true });
    const b = EventFd.create({ nonBlocking: true });
    let aHits = 0;
    let bHits = 0;
    poller.add(a.fd, () => { if (a.read() > 0n) aHits++; });
    a.write(1n);
    await until(() => aHits === 1);
    poller.remove(a.fd);
    poller.add(b.fd, () => { if (b.read() > 0n) bHits++; });
    a.write(1n);
    b.write(1n);
    await until(() => bHits === 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(aHits).toBe(1);
    poller.close();
    a.close();
    b.close();
  });
});
