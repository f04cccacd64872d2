/**
 * What the shared modules import from node:buffer and node:stream, for the
 * console bundle. The stream adapters (coreTransform, pump) are never called
 * in the page: it drives the synchronous cores (StreamCore) itself.
 */
import { Buffer } from 'buffer';

export { Buffer };

export function isAscii(bytes: Uint8Array): boolean {
  return bytes.every((b) => b < 0x80);
}

export class Transform {
  constructor() {
    throw new Error('node:stream is not available in the console');
  }
}

export const Readable = Transform;
