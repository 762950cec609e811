import { serializeHeader } from './format.js';
import type { Qcow2Metadata } from './metadata.js';

/**
 * Rewrites the backing file name and format in `image`'s header (null: no backing file), as
 * `qemu-img rebase -u` does. Everything written before must be durable first: once the header
 * names another backing file, clusters the image does not hold are read from there. The header
 * (with the name, in cluster 0) is one write between two barriers. The in-memory chain
 * (`image.backing`) is the caller's to change.
 */
export async function writeBackingName(image: Qcow2Metadata, name: string | null, format: string | null): Promise<void> {
  const h = image.header;
  await image.lock.exclusive(async () => {
    await image.beforeFirstWrite();
    // Cached metadata and data durable before the header names another backing file.
    await image.flushUnlocked();
    h.backingFile = name;
    h.backingFormat = name === null ? null : format;
    await image.file.writeAt(0, serializeHeader(h));
    await image.file.datasync();
  });
}
