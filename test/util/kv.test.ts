import { describe, expect, test } from 'vitest';
import { parseKeyValues, splitOptionList, unquote } from '../../src/util/kv.js';
import { parseRestoreSpec } from '../../src/vmm/restore-spec.js';
import { parseDisk, parsePort } from '../../src/vmm/cli-config.js';

describe("Cloud Hypervisor's option syntax", () => {
  test('commas split items, except inside double quotes and [lists] (which may nest)', () => {
    expect(splitOptionList('path=a.raw,readonly=on', 'disk')).toEqual(['path=a.raw', 'readonly=on']);
    expect(splitOptionList('path="/vm/a,b.raw",id=x', 'disk')).toEqual(['path="/vm/a,b.raw"', 'id=x']);
    expect(splitOptionList('topology=[1,2],x=[[1,2],[3]],y=1', 'cpus')).toEqual(['topology=[1,2]', 'x=[[1,2],[3]]', 'y=1']);
    expect(splitOptionList('a="[",b=1', 'x')).toEqual(['a="["', 'b=1']);
    expect(splitOptionList('a=1,,b=2,', 'x')).toEqual(['a=1', 'b=2']);
  });

  test.each([
    ['path="/a,b', /--disk: unterminated quote/],
    ['ids=[1,2', /--disk: "\[" without "\]"/],
    ['ids=1,2]', /--disk: "\]" without "\["/],
  ])('unbalanced %s is refused', (text, message) => {
    expect(() => splitOptionList(text, 'disk')).toThrow(message);
  });

  test('a quoted value loses its quotes; others are kept as they are', () => {
    expect(unquote('"/a,b"')).toBe('/a,b');
    expect(unquote('"')).toBe('"');
    expect(unquote('a"b"')).toBe('a"b"');
    expect(parseKeyValues('path="/vm/a,b.raw",id=x', 'disk', ['path', 'id'])).toEqual(new Map([['path', '/vm/a,b.raw'], ['id', 'x']]));
  });

  test('--disk, --serial and --restore take quoted paths with commas', () => {
    expect(parseDisk('path="/vm/a,b.raw",readonly=on', 0)).toMatchObject({ path: '/vm/a,b.raw', readonly: true });
    expect(parsePort('file="/log/a,b.txt"', '--serial')).toEqual({ mode: 'File', file: '/log/a,b.txt' });
    expect(parsePort('socket="/run/a,b.sock"', '--console')).toEqual({ mode: 'Socket', socket: '/run/a,b.sock' });
    expect(parseRestoreSpec('source_url="file:///snap/a,b",prefault=on,disk._disk0="/d/c,d.qcow2"')).toEqual({
      source_url: 'file:///snap/a,b', prefault: true, disk_paths: { _disk0: '/d/c,d.qcow2' },
    });
  });
});
