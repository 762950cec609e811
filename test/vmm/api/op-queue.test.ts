import { expect, test } from 'vitest';
import { OperationQueue } from '../../../src/vmm/api/op-queue.js';

const later = (ms: number, log: string[], name: string) => async () => {
  log.push(`start ${name}`);
  await new Promise((r) => setTimeout(r, ms));
  log.push(`end ${name}`);
};

test('an exclusive operation is refused while another runs, then accepted after', async () => {
  const q = new OperationQueue();
  const log: string[] = [];
  const first = q.submit('vm.snapshot', 'exclusive', later(30, log, 'snapshot'));
  await expect(q.submit('vm.pause', 'exclusive', later(1, log, 'pause'))).rejects.toMatchObject({
    code: 'ECONFLICT',
    message: 'vm.pause conflicts with vm.snapshot, which is still in progress; retry when it has finished',
  });
  await first;
  await new Promise((r) => setImmediate(r));
  expect(q.inProgress).toEqual([]);
  await q.submit('vm.pause', 'exclusive', later(1, log, 'pause'));
  expect(log).toEqual(['start snapshot', 'end snapshot', 'start pause', 'end pause']);
});

test('queued operations wait and run one at a time, in order, even after a failure', async () => {
  const q = new OperationQueue();
  const log: string[] = [];
  const a = q.submit('a', 'exclusive', async () => {
    await later(20, log, 'a')();
    throw new Error('a failed');
  });
  const b = q.submit('vm.shutdown', 'queued', later(5, log, 'b'));
  const c = q.submit('vmm.shutdown', 'queued', later(5, log, 'c'));
  await expect(a).rejects.toThrow('a failed');
  await b;
  await c;
  expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
});
