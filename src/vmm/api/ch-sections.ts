/**
 * The parts of Cloud Hypervisor's VmConfig that tsvmm has no device or feature for yet. A client
 * that serialises the whole struct (ch-remote, orchestrators, a config copied from Cloud
 * Hypervisor's own `vm.info`) sends them all, mostly null, false or empty: those are accepted (and
 * the top-level sections kept, so vm.info reports them back); a value that asks for something
 * tsvmm cannot do is refused with a 400 naming the field and saying why, never ignored.
 */
import { ConfigError } from '../../errors.js';

/** Off: null, false or an empty list. */
function isOff(value: unknown): boolean {
  return value === null || value === false || (Array.isArray(value) && value.length === 0);
}

/** Fields whose default is not "off", with the default values tsvmm accepts. */
const DEFAULTS: Record<string, (v: unknown) => boolean> = {
  'cpus.max_phys_bits': (v) => v === 46,
  'memory.hotplug_method': (v) => v === 'Acpi',
  'memory.thp': (v) => typeof v === 'boolean', // a hint to the host kernel either way
  'platform.num_pci_segments': (v) => v === 1,
  'debug_console.mode': (v) => v === 'Off',
  'disk.num_queues': (v) => v === 1,
  'disk.queue_size': (v) => v === 128 || v === 256,
  'disk.sparse': (v) => v === true,
  'disk.pci_segment': (v) => v === 0,
  'vsock.pci_segment': (v) => v === 0,
};

/** Sections whose mere presence makes a device (Cloud Hypervisor's `Option<...Config>`): null only. */
const DEVICE_SECTIONS = new Set(['balloon', 'tpm', 'ivshmem']);

/** Why a field tsvmm cannot honour yet is refused (the default message covers the rest). */
const WHY: Record<string, string> = {
  net: 'tsvmm has no network device yet',
  balloon: 'tsvmm has no balloon device yet',
  tpm: 'tsvmm has no TPM device yet',
  'payload.firmware': 'tsvmm boots kernels directly, without firmware',
  net_fds: 'tsvmm has no network device yet, so there is no interface to hand file descriptors to',
};

function refuse(field: string, value: unknown): never {
  const key = field.replace(/^disks\[\d+\]/, 'disk');
  const why = WHY[field] ?? WHY[key] ?? WHY[field.split('.')[0]!] ?? 'tsvmm does not support it yet';
  throw new ConfigError(`${field}: ${JSON.stringify(value)} is not supported: ${why}`, { field });
}

/**
 * A field tsvmm has nothing behind yet (a schema's `x-tsvmm-off-or-default`): accepted when off or
 * at its accepted default; a settings object field by field; otherwise a 400 naming the field.
 */
export function checkOffOrDefault(field: string, value: unknown): void {
  const rule = DEFAULTS[field.replace(/^disks\[\d+\]/, 'disk')];
  if (DEVICE_SECTIONS.has(field)) {
    if (value !== null) refuse(field, value);
  } else if (rule !== undefined) {
    if (!isOff(value) && !rule(value)) refuse(field, value);
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const [key, v] of Object.entries(value)) checkOffOrDefault(`${field}.${key}`, v);
  } else if (!isOff(value)) {
    refuse(field, value);
  }
}
