const ZEROS = new Uint8Array(1024 * 1024);

/** True when every byte is zero (memcmp against a zero page, the hot loop of convert/compare). */
export function isAllZero(b: Uint8Array): boolean {
  for (let at = 0; at < b.byteLength; at += ZEROS.byteLength) {
    const part = b.subarray(at, Math.min(b.byteLength, at + ZEROS.byteLength));
    if (Buffer.compare(part, ZEROS.subarray(0, part.byteLength)) !== 0) return false;
  }
  return true;
}
