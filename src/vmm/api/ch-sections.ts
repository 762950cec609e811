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
  'net.num_queues': (v) => v === 2,
  'net.queue_size': (v) => v === 256,
  'net.vhost_mode': (v) => v === 'Client',
  'net.pci_segment': (v) => v === 0,
};

/** Fields whose false is not "off" but asks for what tsvmm does not do: null or the one value tsvmm has. */
const ONLY: Record<string, (v: unknown) => boolean> = {
  'net.offload_tso': (v) => v === true,
  'net.offload_ufo': (v) => v === true,
  'net.offload_csum': (v) => v === true,
};

/** Sections whose mere presence makes a device (Cloud Hypervisor's `Option<...Config>`): null only. */
const DEVICE_SECTIONS = new Set(['balloon', 'tpm', 'ivshmem']);

/** Why a field tsvmm cannot honour yet is refused (the default message covers the rest). */
const WHY: Record<string, string> = {
  balloon: 'tsvmm has no balloon device yet',
  tpm: 'tsvmm has no TPM device yet',
  'payload.firmware': 'tsvmm boots kernels directly, without firmware',
  net_fds: 'handing fds over the API would need SCM_RIGHTS: give the restored devices their taps with network_overrides',
  'net.fds': 'handing a tap fd over the API would need SCM_RIGHTS: give tap, or start tsvmm with --net fd=N',
  'net.fd': 'handing a tap fd over the API would need SCM_RIGHTS: give tap, or start tsvmm with --net fd=N',
  'net.offload_tso': 'tsvmm always offers the offloads (the guest\'s driver may leave them off)',
  'net.offload_ufo': 'tsvmm always offers the offloads (the guest\'s driver may leave them off)',
  'net.offload_csum': 'tsvmm always offers the offloads (the guest\'s driver may leave them off)',
  'net.vhost_user': 'tsvmm has no vhost-user backends',
  'net.vhost_socket': 'tsvmm has no vhost-user backends',
  'net.vhost_mode': 'tsvmm has no vhost-user backends',
  'net.mtu': 'tsvmm does not set the MTU',
  'net.rate_limiter_config': 'tsvmm has no network rate limits yet',
};

/** A field's path with list indices dropped where rules are per kind: `disks[2].iommu` → `disk.iommu`, `net[0].mtu` → `net.mtu`. */
function ruleKey(field: string): string {
  return field.replace(/^disks\[\d+\]/, 'disk').replace(/^net\[\d+\]/, 'net');
}

function refuse(field: string, value: unknown): never {
  // The reason of the field, or of the nearest section it is in (`net.rate_limiter_config` for its `.bandwidth`).
  const parts = ruleKey(field).split('.');
  const section = parts.map((_, n) => WHY[parts.slice(0, parts.length - n).join('.')]).find((w) => w !== undefined);
  const why = WHY[field] ?? section ?? 'tsvmm does not support it yet';
  throw new ConfigError(`${field}: ${JSON.stringify(value)} is not supported: ${why}`, { field });
}

/**
 * A field tsvmm has nothing behind yet (a schema's `x-tsvmm-off-or-default`): accepted when off or
 * at its accepted default; a settings object field by field; otherwise a 400 naming the field.
 */
export function checkOffOrDefault(field: string, value: unknown): void {
  const rule = DEFAULTS[ruleKey(field)];
  const only = ONLY[ruleKey(field)];
  if (DEVICE_SECTIONS.has(field)) {
    if (value !== null) refuse(field, value);
  } else if (only !== undefined) {
    if (value !== null && !only(value)) refuse(field, value);
  } else if (rule !== undefined) {
    if (!isOff(value) && !rule(value)) refuse(field, value);
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const [key, v] of Object.entries(value)) checkOffOrDefault(`${field}.${key}`, v);
  } else if (!isOff(value)) {
    refuse(field, value);
  }
}
