/**
 * `medvault demo` (and `npm run demo`): the whole scenario on the embedded
 * defaults, in words a person follows. A node is initialised in a fresh data
 * directory and served on 127.0.0.1; two hospitals, an insurer and a DPO are
 * members; an MRI-sized study is uploaded, granted, fetched, revoked, opened
 * by break-glass, audited and erased, and the erasure certificate verified.
 * Every call goes through the HTTP API with the SDK, as a member's own
 * software would make it.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { verifyChain } from '../../anchor/ledger.ts';
import { isMedvaultError } from '../../errors.ts';
import { logger } from '../../log.ts';
import { buildServer } from '../http/server.ts';
import { verifyCertificate } from '../protocol/certificate.ts';
import {
  generateMemberKeys,
  type MemberCredentials,
  memberKeyFileText,
  memberPublic,
  parseMemberKeyFile,
  VaultClient,
} from '../sdk/client.ts';
import { subjectOf } from '../sdk/pseudonym.ts';
import type { Role } from '../vault/metadata.ts';
import { initNode, openNode } from '../vault/node.ts';

const DAY = 86_400_000;

export interface DemoOptions {
  /** Size of the study, MiB. */
  sizeMiB?: number;
  /** Keep the working directory (printed) instead of deleting it. */
  keep?: boolean;
  say?: (line: string) => void;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

async function randomFile(path: string, size: number): Promise<void> {
  const block = randomBytes(1024 * 1024);
  await pipeline(
    (async function* () {
      for (let left = size; left > 0; left -= block.length)
        yield left >= block.length ? block : block.subarray(0, left);
    })(),
    createWriteStream(path),
  );
}

export async function runDemo(options: DemoOptions = {}): Promise<void> {
  const say = options.say ?? ((line: string) => process.stdout.write(`${line}\n`));
  // The node's request log would bury the story; MEDVAULT_LOG_LEVEL brings it back.
  if (!process.env.MEDVAULT_LOG_LEVEL) logger.level = 'warn';
  const size = (options.sizeMiB ?? 128) * 1024 * 1024;
  const work = mkdtempSync(join(tmpdir(), 'medvault-demo-'));
  const data = join(work, 'node');
  const seconds = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(2)} s`;
  try {
    say(`medvault demo: everything runs on this machine, in ${work}\n`);

    say('1. A hospital IT team sets up a vault node on the embedded defaults: a sealed keystore, a');
    say('   SQLite metadata store, a hash-linked ledger file and a local blob store.');
    const init = await initNode(data, { name: 'st-mary-node' });
    const vault = await openNode(data);
    const app = await buildServer(vault);
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    say(`   node key ${init.nodeId} (signs ledger blocks and erasure certificates), API on ${url}`);
    say(`   OpenAPI at ${url}/docs, health at /healthz and /readyz, metrics at /metrics\n`);

    try {
      const admin = new VaultClient(url, parseMemberKeyFile(readFileSync(init.adminKeyFile, 'utf8')));
      say('2. The admin adds the consortium members. Each makes its own keys: an Ed25519 key that');
      say('   signs its requests and an age (X25519) key it decrypts with. Each addition is anchored.');
      const member = async (name: string, role: Role, what: string) => {
        const keys: MemberCredentials = generateMemberKeys();
        const { member: row, receipt } = await admin.addMember({ name, role, ...memberPublic(keys) });
        const keyFile = join(work, `${name}.key`);
        writeFileSync(keyFile, memberKeyFileText(name, keys), { mode: 0o600 });
        say(`   ${name.padEnd(12)} ${role.padEnd(8)} ${row.id}  ${what} (block ${receipt.block.height})`);
        return { id: row.id, client: new VaultClient(url, keys), keyFile };
      };
      const stMary = await member('st-mary', 'uploader', "St Mary's Hospital, radiology");
      const cityClinic = await member('city-clinic', 'uploader', 'City Clinic, emergency department');
      const insurer = await member('insurer', 'reader', 'the patient’s health insurer');
      const dpo = await member('dpo', 'dpo', 'the data-protection officer');
      say('');

      say(`3. St Mary's uploads an MRI study of ${size / 1024 / 1024} MiB (random bytes stand in for it).`);
      const study = join(work, 'mri-study.dcm');
      await randomFile(study, size);
      const original = await sha256File(study);
      const subject = await subjectOf('MRN-0012345', { client: stMary.client });
      say(`   the patient MRN-0012345 becomes the subject pseudonym ${subject.slice(0, 16)}… (HMAC, keyed by the`);
      say("   consortium's subject key, which the node sealed to St Mary's own key): the vault and the ledger");
      say('   never see the MRN.');
      let t0 = performance.now();
      const { record, receipt } = await stMary.client.upload(createReadStream(study, { highWaterMark: 1 << 20 }), {
        subject,
        readers: [],
        purpose: 'treatment',
        expiresAt: Date.now() + 365 * DAY,
      });
      say(`   encrypted on St Mary's side to itself and to the patient's custodian key, streamed, stored:`);
      say(`   record ${record.id}, ${record.size} bytes of ciphertext, sha256 ${record.ciphertextHash.slice(0, 16)}…`);
      say(`   anchored as record.created in block ${receipt.block.height}; receipt verified offline. ${seconds(t0)}\n`);

      say("4. St Mary's grants the insurer read access for claims review, for 30 days. The KMS unwraps");
      say('   the custodian stanza inside its boundary and writes a new header; the blob is not touched.');
      const grant = await stMary.client.grant(record.id, insurer.id, {
        purpose: 'claims.review',
        expiresAt: Date.now() + 30 * DAY,
      });
      say(`   acl.granted anchored in block ${grant.receipt.block.height}\n`);

      say('5. The insurer fetches the study and decrypts it on its own machine with its own key.');
      t0 = performance.now();
      const fetchedPath = join(work, 'insurer-copy.dcm');
      const fetched = await insurer.client.fetch(record.id, { path: fetchedPath });
      const same = (await sha256File(fetchedPath)) === original;
      say(
        `   ${fetched.bytes} bytes, ${same ? 'identical to the original' : 'DIFFERENT FROM THE ORIGINAL'}; the ciphertext matched the`,
      );
      say(
        `   hash in its ledger receipt; this access is anchored (block ${fetched.access.block.height}). ${seconds(t0)}`,
      );
      const sealed = join(work, 'insurer-copy.age');
      const { stream } = await insurer.client.fetchEncrypted(record.id);
      await pipeline(stream, createWriteStream(sealed));
      const age = spawnSync('age', ['-d', '-i', insurer.keyFile, '-o', join(work, 'by-age.dcm'), sealed]);
      if (age.error) say('   (the stock age CLI is not installed here; scripts/setup.sh installs it)\n');
      else {
        const ok = age.status === 0 && (await sha256File(join(work, 'by-age.dcm'))) === original;
        say(
          `   the same record, fetched encrypted, opens with the stock \`age\` tool: ${ok ? 'yes' : 'NO'} (no lock-in)\n`,
        );
      }
      rmSync(fetchedPath, { force: true });
      rmSync(join(work, 'by-age.dcm'), { force: true });

      say("6. The claim is settled; St Mary's revokes the insurer. Its stanza leaves the header and");
      say('   acl.revoked is anchored. (What the insurer already decrypted, it keeps: revocation cannot');
      say('   unread a file. For a leaked key, `medvault revoke --reencrypt` makes a new file key and blob.)');
      await stMary.client.revoke(record.id, insurer.id);
      const refused = await insurer.client.fetch(record.id, { path: join(work, 'again.dcm') }).catch((e) => e);
      say(`   the insurer's next fetch: ${isMedvaultError(refused) ? `refused, ${refused.code}` : 'NOT REFUSED'}\n`);

      say('7. Break-glass: the patient arrives unconscious at City Clinic, which holds no grant.');
      const tried = await insurer.client
        .emergency(record.id, 'we would like to see it again please', { path: join(work, 'no.dcm') })
        .catch((e) => e);
      say(`   the insurer tries break-glass: ${isMedvaultError(tried) ? `refused, ${tried.code}` : 'NOT REFUSED'}`);
      say('   (only members an admin gave the capability may: clinical staff, never insurers);');
      const capability = await admin.setEmergencyAccess(cityClinic.id, true);
      say(
        `   the admin gives City Clinic break-glass access, anchored as member.capability (block ${capability.receipt?.block.height}).`,
      );
      const emergency = await cityClinic.client.emergency(
        record.id,
        'patient unconscious in the emergency department; prior MRI needed now',
        { path: join(work, 'er-copy.dcm') },
      );
      rmSync(join(work, 'er-copy.dcm'), { force: true });
      say(
        `   access given (${emergency.bytes} bytes) and anchored as access.emergency (block ${emergency.access.block.height});`,
      );
      const reviews = await dpo.client.reviews();
      say(`   the DPO's review queue now holds ${reviews.length} break-glass access: "${reviews[0]?.reason}";`);
      const closed = await dpo.client.closeReview(reviews[0]?.id as string, 'justified');
      say(`   the DPO closes it as justified, anchored as review.closed (block ${closed.receipt.block.height}).\n`);

      say("8. Audit: St Mary's reads the record's trail from the ledger; every receipt verifies.");
      for (const r of await stMary.client.audit(record.id)) {
        const who = (r.event.reader ?? r.event.uploader ?? '') as string;
        say(`   ${r.event.type.padEnd(17)} ${who}  block ${r.block.height}, leaf ${r.leafIndex}`);
      }
      say('');

      say('9. The patient asks to be forgotten. The DPO executes the erasure for the subject:');
      t0 = performance.now();
      const certificate = await dpo.client.erase({ subject });
      say(`   custodian key ${certificate.kms?.keyId} destroyed: ${certificate.kms?.confirmed}`);
      for (const r of certificate.records) {
        say(`   record ${r.recordId}: ${r.stores.map((s) => s.confirmed).join('; ')}`);
        say(`   tombstone record.erased in block ${r.tombstone.block.height}`);
      }
      const certFile = join(work, 'erasure-certificate.json');
      writeFileSync(certFile, `${JSON.stringify(certificate, null, 2)}\n`);
      say(`   certificate signed by the node, saved as ${certFile}. ${seconds(t0)}`);
      const sweep = await dpo.client.sweep(certificate.requestId);
      say(
        `   the sweep looked in ${sweep.checked.length} places (stores, KMS, metadata, the node's files) and found ${
          sweep.findings.length === 0 ? 'no trace' : `${sweep.findings.length} trace(s)`
        }`,
      );
      const gone = await stMary.client.record(record.id).catch((e) => e);
      say(
        `   the record now answers: ${isMedvaultError(gone) ? `${gone.code} (HTTP ${gone.info?.status})` : 'STILL THERE'}\n`,
      );

      say('10. An auditor verifies the certificate offline, and walks the whole ledger.');
      const verified = verifyCertificate(JSON.parse(readFileSync(certFile, 'utf8')), { trusted: [vault.nodeId] });
      say(
        `   certificate OK: ${verified.records} record(s), key destroyed: ${verified.keyDestroyed}, signer ${verified.signer}`,
      );
      say(`   (from a shell, with \`medvault demo --keep\`: medvault verify ${certFile} --trust ${vault.nodeId})`);
      const chain = await verifyChain(vault.ledger, { trusted: new Set([vault.nodeId]) });
      say(
        `   ledger OK: ${chain.blocks} blocks, ${chain.events} events, every link, Merkle root and signature checked;`,
      );
      let naming = 0;
      for await (const block of vault.ledger.blocks(0)) {
        for (const event of block.events) {
          const text = JSON.stringify(event);
          if (text.includes(subject) || text.includes('MRN-0012345')) naming++;
        }
      }
      say(
        `   the events carry random ids, hashes, key fingerprints and public keys: ${naming === 0 ? "none names the patient's MRN or pseudonym" : `${naming} NAME THE PATIENT`}, none holds plaintext.\n`,
      );
      say('Done.');
    } finally {
      await app.close();
      await vault.close();
    }
  } finally {
    if (options.keep) say(`(kept ${work})`);
    else if (existsSync(work)) rmSync(work, { recursive: true, force: true });
  }
}
