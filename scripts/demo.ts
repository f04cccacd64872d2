/**
 * npm run demo: the main job on the embedded defaults.
 *
 * Part one is the envelope as a person uses the CLI: a hospital and a reader
 * make keys, the hospital encrypts a document to the reader (and itself),
 * the reader decrypts it with medvault and with the stock `age` tool, and a
 * damaged copy is refused.
 *
 * Part two composes the vault's building blocks as they exist today (key
 * custody, the fs blob store, the file ledger with receipts) through the
 * flows of DESIGN.md: upload, grant, erasure, audit. The vault service that
 * will run these flows behind an HTTP API is the next piece of work.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Batcher } from '../anchor/batcher.ts';
import type { LedgerEvent } from '../anchor/events.ts';
import { FileLedger } from '../anchor/file-ledger.ts';
import { verifyChain } from '../anchor/ledger.ts';
import { verifyReceipt } from '../anchor/receipt.ts';
import { decrypt, encrypt, splitAgeFile } from '../crypto/age.ts';
import { keyFingerprint, SigningKey } from '../crypto/ed25519.ts';
import { parseIdentityFile, X25519Identity } from '../crypto/x25519.ts';
import { isMedvaultError } from '../errors.ts';
import { LocalKms } from '../kms/local-kms.ts';
import { FsBlobStore } from '../storage/fs-store.ts';

const root = new URL('..', import.meta.url).pathname;
const bin = join(root, 'bin/medvault.js');
const work = mkdtempSync(join(tmpdir(), 'medvault-demo-'));
const say = (text: string) => console.log(text);
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16);

function medvault(...args: string[]): string {
  const run = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`medvault ${args.join(' ')} failed: ${run.stderr}`);
  return run.stderr.trim();
}

try {
  if (!existsSync(join(root, 'dist/services/cli.js')))
    execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  say(`medvault demo — working in ${work}\n`);

  say('1. The hospital and a radiologist each make an age identity (private key file + public key).');
  const hospitalKey = join(work, 'hospital.key');
  const readerKey = join(work, 'radiologist.key');
  const hospital = medvault('keygen', '-o', hospitalKey).replace('Public key: ', '');
  const reader = medvault('keygen', '-o', readerKey).replace('Public key: ', '');
  say(`   hospital:    ${hospital}\n   radiologist: ${reader}\n`);

  say('2. The hospital has an 8 MiB MRI study (random bytes stand in for it).');
  const study = join(work, 'mri-study.dcm');
  writeFileSync(study, randomBytes(8 * 1024 * 1024));
  say(`   sha256 ${sha(study)}…\n`);

  say('3. It encrypts the study to the radiologist and to itself: one file key, wrapped twice.');
  const sealed = join(work, 'mri-study.dcm.age');
  medvault('encrypt', '-r', reader, '-r', hospital, '-o', sealed, study);
  const header = readFileSync(sealed).subarray(0, 400).toString('latin1').split('\n---')[0] as string;
  say(
    `   header (no names, no plaintext, two X25519 stanzas):\n${header
      .split('\n')
      .map((l) => `     ${l.slice(0, 70)}`)
      .join('\n')}\n`,
  );

  say('4. The radiologist decrypts with medvault, using only their own key file.');
  const opened = join(work, 'opened-by-medvault.dcm');
  medvault('decrypt', '-i', readerKey, '-o', opened, sealed);
  say(`   sha256 ${sha(opened)}… ${sha(opened) === sha(study) ? 'matches the original' : 'DOES NOT MATCH'}\n`);

  say('5. The same file opens with the stock `age` tool: the format is age v1, no lock-in.');
  const ageRun = spawnSync('age', ['-d', '-i', readerKey, '-o', join(work, 'opened-by-age.dcm'), sealed]);
  if (ageRun.error) say('   (the age CLI is not installed here; run scripts/setup.sh)\n');
  else say(`   age exit ${ageRun.status}; sha256 ${sha(join(work, 'opened-by-age.dcm'))}…\n`);

  say('6. One flipped bit in transit: decryption refuses, and no partial output is left behind.');
  const damaged = readFileSync(sealed);
  damaged.writeUInt8((damaged.readUInt8(damaged.length - 1000) ^ 1) & 0xff, damaged.length - 1000);
  writeFileSync(join(work, 'damaged.age'), damaged);
  const refused = spawnSync(
    process.execPath,
    [bin, 'decrypt', '-i', readerKey, '-o', join(work, 'x.dcm'), join(work, 'damaged.age')],
    {
      encoding: 'utf8',
    },
  );
  say(`   exit ${refused.status}: ${refused.stderr.trim()}`);
  say(`   output file present: ${existsSync(join(work, 'x.dcm'))}\n`);
  await buildingBlocks(readFileSync(study), readerKey);
  say('Done.');
} finally {
  rmSync(work, { recursive: true, force: true });
}

/** Part two: the flows of DESIGN.md over the building blocks that exist today. */
async function buildingBlocks(document: Buffer, readerKeyFile: string): Promise<void> {
  const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
  const id = () => randomBytes(16).toString('hex');
  const data = join(work, 'vault');
  say("7. The vault's building blocks on the embedded defaults, in a data directory:");
  const kms = await LocalKms.open(join(work, 'vault.keystore'), { passphrase: 'demo only: use a real secret' });
  const store = await FsBlobStore.open(join(data, 'blobs'));
  const ledger = await FileLedger.open(join(data, 'ledger.mvl'));
  const node = SigningKey.generate();
  const dpo = SigningKey.generate();
  const batcher = new Batcher(ledger, node);
  say(`   keystore (sealed), blob store, ledger file; this node signs blocks as ${node.id}\n`);

  // A subject appears only as a keyed pseudonym: HMAC under a hospital secret, never the MRN itself.
  const subject = createHmac('sha256', randomBytes(32)).update('MRN 0012345').digest('hex');
  const reader = parseIdentityFile(readFileSync(readerKeyFile, 'utf8'))[0] as X25519Identity;
  const { recipient: custodian, keyId } = await kms.custodian(subject);
  say(`8. Upload: the study is encrypted to the radiologist and to the patient's custodian key ${keyId}`);
  say('   (held by the KMS); only ciphertext reaches the store, and record.created is anchored.');
  const { header, payload } = splitAgeFile(encrypt([reader.recipient, custodian], document));
  const blob = await store.put(
    (async function* () {
      yield payload;
    })(),
  );
  const recordId = id();
  const created = await batcher.submit({
    type: 'record.created',
    at: Date.now(),
    recordId,
    ciphertextHash: blob.sha256,
    headerHash: sha256(header),
    size: blob.size,
    uploader: node.id,
    subject,
    node: node.id,
  } as LedgerEvent);
  const ok = verifyReceipt(JSON.parse(JSON.stringify(created)), { trusted: [node.id] });
  say(
    `   blob ${blob.ref.slice(0, 16)}… (${blob.size} bytes); receipt: block ${ok.height}, leaf ${created.leafIndex},`,
  );
  say(`   audit path of ${created.auditPath.length} hashes, signature verified offline\n`);

  say('9. Grant: an insurer is added. The KMS unwraps the custodian stanza inside its boundary and');
  say('   writes a new header; the stored ciphertext is not touched.');
  const insurer = X25519Identity.generate();
  const newHeader = await kms.rewrap(subject, header, [reader.recipient, insurer.recipient]);
  const parts: Buffer[] = [];
  for await (const chunk of await store.get(blob.ref)) parts.push(chunk as Buffer);
  const opened = decrypt([insurer], Buffer.concat([newHeader, ...parts]));
  await batcher.submit({
    type: 'acl.granted',
    at: Date.now(),
    recordId,
    reader: keyFingerprint(insurer.recipient.publicKey),
    grantor: node.id,
    purpose: 'claims.review',
    expiresAt: Date.now() + 30 * 86_400_000,
  } as LedgerEvent);
  say(
    `   the insurer decrypts the stored blob: ${sha256(opened) === sha256(document) ? 'identical to the original' : 'MISMATCH'}\n`,
  );

  say('10. Erasure (DPO): the custodian key is destroyed, the ciphertext deleted, a tombstone anchored.');
  const destroyed = await kms.destroy(subject);
  const deleted = await store.delete(blob.ref);
  const tombstone = await batcher.submit({
    type: 'record.erased',
    at: Date.now(),
    recordId,
    ciphertextHash: blob.sha256,
    dpo: dpo.id,
    requestId: id(),
  } as LedgerEvent);
  say(`   ${destroyed.confirmed}`);
  say(`   ${deleted.confirmed}`);
  const refused = await kms.rewrap(subject, newHeader, [reader.recipient]).catch((e) => e);
  say(
    `   re-sharing now fails: ${isMedvaultError(refused) ? refused.code : 'NOT REFUSED'}; blob present: ${await store.has(blob.ref)}`,
  );
  say(`   tombstone receipt verifies offline: block ${verifyReceipt(tombstone).height}\n`);

  say('11. Audit: any member walks the whole ledger and checks every link, Merkle root and signature.');
  const chain = await verifyChain(ledger, { trusted: new Set([node.id]) });
  say(`   ledger OK: ${chain.blocks} blocks, ${chain.events} events (record.created, acl.granted, record.erased);`);
  say('   the events carry ids, hashes and pseudonyms only — no names, no plaintext.\n');
  await ledger.close();
}
