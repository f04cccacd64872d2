import { createReadStream, createWriteStream, mkdtempSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { FsBlobStore } from './storage/fs-store.ts';

const store = await FsBlobStore.open(mkdtempSync('/tmp/ps-'));
async function* pass(src: AsyncIterable<Uint8Array>) {
  for await (const c of src) yield c;
}
for (let i = 0; i < 4; i++) {
  let t = performance.now();
  const r = await store.put(pass(createReadStream('/tmp/big.bin', { highWaterMark: 64 * 1024 })));
  const put = performance.now() - t;
  await store.delete(r.ref);
  t = performance.now();
  await pipeline(
    createReadStream('/tmp/big.bin', { highWaterMark: 1 << 20 }),
    createWriteStream('/tmp/ps-copy.bin', { highWaterMark: 1 << 20 }),
  );
  const h = await open('/tmp/ps-copy.bin', 'r+');
  await h.sync();
  await h.close();
  const copy = performance.now() - t;
  console.log('put', put.toFixed(0), 'copy', copy.toFixed(0));
}
