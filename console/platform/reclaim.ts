/** The browser's crypto/reclaim.ts: a page has no V8 flags to set, so chunk reclaim is off. */
export function enableChunkReclaim(): boolean {
  return false;
}

export function chunkReclaimEnabled(): boolean {
  return false;
}

export function noteChunkBytes(_bytes: number): void {}
