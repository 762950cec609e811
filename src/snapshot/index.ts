/**
 * tsvmm snapshots: a directory in Cloud Hypervisor's layout.
 *
 *   <dir>/vm.json           format, version, config, per-region checksums, vCPU/VM/device
 *                           states (opaque JSON filled by the VMM; the config is parsed by
 *                           the VMM's ConfigCodec), disk identities, and a
 *                           sha256 over the canonical JSON of everything else
 *   <dir>/memory-region-N   one sparse file per RAM region (ramLayout order), exactly the
 *                           region's size; only non-zero pages are allocated
 *
 * Writing: `writeSnapshot(dir, input)` — atomic, replaces an existing snapshot only at the final
 * rename (crash windows documented in writer.ts). Reading: `readSnapshot(dir, {knownDeviceTypes})`
 * verifies everything before returning, and every failure is a SnapshotError (code ESNAPSHOT)
 * naming the file. KVM structs go through toJsonSafe/fromJsonSafe (bigint ⇄ "0x…",
 * Uint8Array ⇄ {"base64": …}) or the field-level encodeU64/decodeU64/encodeBytes/decodeBytes.
 */
export { SnapshotError } from './errors.js';
export {
  encodeBytes, decodeBytes, encodeU64, decodeU64, toJsonSafe, fromJsonSafe, canonicalJson, assertJsonValue,
  type JsonValue, type JsonObject,
} from './json-codec.js';
export {
  FORMAT_NAME, FORMAT_VERSION, VM_JSON, checkFormatVersion, documentChecksum, formatVersionString,
  memoryRegionFileName, validateDocument,
  type ConfigCodec, type FormatVersion, type SnapshotDocument, type MemoryRegionEntry, type DeviceEntry, type DiskEntry,
} from './format.js';
export {
  PAGE_SIZE, CHECKSUM_ALGORITHMS, DEFAULT_CHECKSUM_ALGORITHM, PageDigest, nonZeroRuns, dataExtentsOf,
  type ChecksumAlgorithm, type RegionChecksum,
} from './sparse.js';
export { findLeftovers, recoverSnapshotDir, type Leftover, type RecoverOptions } from './leftovers.js';
export {
  writeSnapshot, SimulatedCrash, SnapshotStaging, WRITE_STEPS, regionEntry,
  type WriteStep, type MemorySource, type SnapshotContent, type SnapshotInput, type WriteSnapshotOptions, type WriteSnapshotResult,
} from './writer.js';
export { LiveRegionFile } from './live-region.js';
export { readSnapshot, type ReadSnapshotOptions, type VerifiedSnapshot, type VerifiedRegion } from './reader.js';
export { snapshotUrlToPath } from './url.js';
