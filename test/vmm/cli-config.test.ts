import { describe, expect, test } from 'vitest';
import { parseApiSocket, parseDisk, parseSerial } from '../../src/vmm/cli-config.js';

describe('--api-socket as Cloud Hypervisor takes it', () => {
  test('path=, fd= and a bare path', () => {
    expect(parseApiSocket('path=/run/vm.sock')).toEqual({ path: '/run/vm.sock' });
    expect(parseApiSocket('/run/vm.sock')).toEqual({ path: '/run/vm.sock' });
    expect(parseApiSocket('fd=7')).toEqual({ fd: 7 });
  });

  test.each([
    ['path=', /--api-socket path=: a path is required/],
    ['fd=x', /--api-socket fd=: "x" must be the number of an inherited listening socket/],
    ['fd=1', /must be the number of an inherited listening socket \(3 or more\)/],
    ['path=/a,fd=3', /takes one of path=PATH, fd=N or a bare path/],
  ])('refuses %s', (text, message) => {
    expect(() => parseApiSocket(text)).toThrow(message);
  });
});

describe('--serial as Cloud Hypervisor takes it', () => {
  test('socket=PATH listens at PATH; a bare socket is the API console; modes are case-insensitive', () => {
    expect(parseSerial('socket=/run/s.sock')).toEqual({ mode: 'Socket', socket: '/run/s.sock' });
    expect(parseSerial('socket')).toEqual({ mode: 'Socket' });
    expect(parseSerial('TTY')).toEqual({ mode: 'Tty' });
    expect(parseSerial('file=/l')).toEqual({ mode: 'File', file: '/l' });
  });

  test.each([
    ['socket=', /--serial socket=: a path is required/],
    ['pty', /--serial pty: not supported yet; use socket=PATH/],
    ['pipe', /must be tty, file=PATH, socket=PATH, socket, null or off/],
  ])('refuses %s', (text, message) => {
    expect(() => parseSerial(text)).toThrow(message);
  });
});

describe('--disk image_type (Cloud Hypervisor) and format (its tsvmm alias)', () => {
  test('either names the format', () => {
    expect(parseDisk('path=/d.qcow2,image_type=qcow2', 0)).toEqual({ path: '/d.qcow2', readonly: false, id: '_disk0', format: 'qcow2' });
    expect(parseDisk('path=/d.raw,format=raw,id=root', 1)).toEqual({ path: '/d.raw', readonly: false, id: 'root', format: 'raw' });
  });

  test('backing_files=on|off (Cloud Hypervisor\'s; off unless given)', () => {
    expect(parseDisk('path=/o.qcow2,backing_files=on', 0)).toEqual({ path: '/o.qcow2', readonly: false, id: '_disk0', backing_files: true });
    expect(parseDisk('path=/o.qcow2,backing_files=off', 0)).toEqual({ path: '/o.qcow2', readonly: false, id: '_disk0' });
    expect(() => parseDisk('path=/o.qcow2,backing_files=maybe', 0)).toThrow(/--disk backing_files: "maybe" must be on or off/);
  });

  test('refuses both at once and types tsvmm cannot read', () => {
    expect(() => parseDisk('path=/d,image_type=raw,format=raw', 0)).toThrow(/give image_type= or format=, not both/);
    expect(() => parseDisk('path=/d,image_type=vhdx', 0)).toThrow(/--disk image_type: "vhdx" must be raw or qcow2 \(tsvmm reads no other image type yet\)/);
  });
});
