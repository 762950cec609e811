/**
 * `tsvmm --event-monitor path=PATH|fd=N`, Cloud Hypervisor's event monitor: every VMM event, one
 * JSON object per line, in the shape `vmm.events` streams (docs/events.md). Each line is written
 * synchronously, so what the last line says before tsvmm exits is on disk (or in the pipe).
 */
import { openSync, writeSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import type { VmmEvent } from '../vmm/controller.js';

export type EventMonitorTarget = { path: string } | { fd: number };

export function parseEventMonitor(text: string): EventMonitorTarget {
  if (text.startsWith('fd=')) {
    const fd = text.slice(3);
    if (!/^\d+$/.test(fd) || Number(fd) > 0x7fff_ffff) throw new ConfigError(`--event-monitor fd=: "${fd}" is not a file descriptor number`);
    return { fd: Number(fd) };
  }
  if (!text.startsWith('path=')) throw new ConfigError(`--event-monitor: "${text}" must be path=PATH or fd=N`);
  const path = text.slice(5);
  if (path === '') throw new ConfigError('--event-monitor path=: a path is required');
  return { path };
}

/** Opens the target (a path is created or appended to) and returns the listener that writes to it. */
export function openEventMonitor(target: EventMonitorTarget): (e: VmmEvent) => void {
  let fd: number;
  if ('fd' in target) {
    fd = target.fd;
  } else {
    try {
      fd = openSync(target.path, 'a');
    } catch (e) {
      throw new ConfigError(`--event-monitor: cannot open ${target.path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  return (e) => { writeSync(fd, `${JSON.stringify(e)}\n`); };
}
