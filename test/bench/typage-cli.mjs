// The age-encryption (typage) npm package as a file-to-file tool, for the
// crypto benchmark: node typage-cli.mjs encrypt|decrypt KEY IN OUT
// (KEY: a recipient for encrypt, an identity file for decrypt).
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Decrypter, Encrypter } from 'age-encryption';

const [mode, key, input, output] = process.argv.slice(2);
const source = Readable.toWeb(createReadStream(input, { highWaterMark: 1 << 20 }));
let result;
if (mode === 'encrypt') {
  const encrypter = new Encrypter();
  encrypter.addRecipient(key);
  result = await encrypter.encrypt(source);
} else {
  const decrypter = new Decrypter();
  for (const line of readFileSync(key, 'utf8').split('\n')) {
    if (line.startsWith('AGE-SECRET-KEY-')) decrypter.addIdentity(line.trim());
  }
  result = await decrypter.decrypt(source);
}
await pipeline(Readable.fromWeb(result), createWriteStream(output));
