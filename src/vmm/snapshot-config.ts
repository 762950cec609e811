/**
 * The VM config as a snapshot stores it: parsed by the parser `vm.create` bodies go through, so
 * a restored VM runs on a config the API would accept. Two differences, both so that a snapshot
 * restores exactly when it did before the snapshot layer stopped knowing the config's shape:
 * a stored config is complete (every section present: vm.create filled the defaults when the VM
 * was made, and a later release must not fill them again differently), and disk ids may be any
 * text, as `--disk id=` allows. Three more, for snapshots older than `backing_files`, the virtio
 * console and virtio-rng: below.
 */
import type { ConfigCodec } from '../snapshot/index.js';
import { parseVmConfigJson } from './api/validate.js';
import type { VmConfig } from './config.js';

const SECTIONS = ['cpus', 'memory', 'payload', 'disks', 'serial'] as const;

export const SNAPSHOT_CONFIG: ConfigCodec<VmConfig> = {
  parse(value, fail) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('', 'an object', value);
    const config = value as Record<string, unknown>;
    for (const section of SECTIONS) {
      const v = config[section];
      if (section === 'disks') {
        if (!Array.isArray(v)) fail(section, 'an array', v);
      } else if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        fail(section, 'an object', v);
      }
    }
    // A disk stored without backing_files is from before the field, when tsvmm followed every
    // backing file; it restores as it did then (the VMM writes the field on every disk now).
    const disks = (config.disks as unknown[]).map((d) => (typeof d === 'object' && d !== null && !Array.isArray(d) && !('backing_files' in d) ? { ...d, backing_files: true } : d));
    // A config stored without a console section is from before tsvmm had a virtio console: its
    // VM had none, and a restore must not add one (Cloud Hypervisor's default would be Tty).
    const console = 'console' in config ? config.console : { mode: 'Off' };
    const parsed = parseVmConfigJson({ ...config, disks, console }, { cliDiskIds: true });
    // Likewise without `rng`: that VM had no entropy device, and its restore adds none.
    if ('rng' in config) return parsed;
    const { rng: _absent, ...withoutRng } = parsed;
    return withoutRng;
  },
  facts(config) {
    return {
      memory: { field: 'memory.size', size: config.memory.size },
      vcpus: { field: 'cpus.boot_vcpus', count: config.cpus.boot_vcpus },
      disks: { field: 'disks', ids: config.disks.map((d) => d.id) },
    };
  },
};
