/**
 * The test vectors of docs/formats.md, made by medvault's own code from fixed seeds, times and
 * nonces (so the same bytes every run): signed requests, key ids, events and their canonical
 * JSON, blocks, a receipt with an audit path, a checkpoint, an erasure certificate with a
 * cosignature, a pseudonym and a subject commitment, a member key file, an invite digest.
 * vectors.test.ts checks them against test/formats/vectors/formats.json (kept in the
 * repository); the independent verifier (verifier/medvault_verify.py) checks that file.
 */
import { createHash } from 'node:crypto';
import { type Block, blockHash, buildBlock } from '../../anchor/block.ts';
import { checkpointBody, signCheckpoint } from '../../anchor/checkpoint.ts';
import { canonicalJson, eventJson, type LedgerEvent, subjectCommitment } from '../../anchor/events.ts';
import { makeReceipt } from '../../anchor/receipt.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { cosignCertificate, signCertificate } from '../../services/protocol/certificate.ts';
import { inviteDigest } from '../../services/protocol/invites.ts';
import { memberKeyFileText } from '../../services/protocol/member-keys.ts';
import { pseudonym } from '../../services/protocol/pseudonym.ts';
import { bodyHash, bodyMessage, forwardMessage, requestMessage } from '../../services/protocol/signing.ts';

const seed = (label: string) => new Uint8Array(createHash('sha256').update(`medvault vectors: ${label}`).digest());
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
const id = (label: string) => createHash('sha256').update(label).digest('hex').slice(0, 32);
const T0 = 1_780_000_000_000;

export function makeVectors() {
  const node = new SigningKey(seed('node A'));
  const peer = new SigningKey(seed('node B'));
  const member = new SigningKey(seed('member st-mary'));
  const dpo = id('dpo');
  const recordId = id('record 1');
  const requestId = id('erasure 1');
  const subjectKey = seed('subject key');
  const subject = pseudonym('MRN-0012345', subjectKey);
  const custodian = id('custodian key of MRN-0012345');

  // Signed requests.
  const body = JSON.stringify({ reader: id('insurer'), purpose: 'claims.review', expiresAt: T0 + 86_400_000 });
  const parts = {
    method: 'POST',
    path: `/v1/records/${recordId}/grants`,
    time: String(T0),
    nonce: '00112233445566778899aabbccddeeff',
    bodyHash: bodyHash(body),
  };
  const message = requestMessage(parts);
  const requestSignature = b64(member.sign(message));
  const uploadSha = createHash('sha256').update('an age file').digest('hex');
  const trailerMessage = bodyMessage(requestSignature, uploadSha);
  const forward = forwardMessage(node.id, member.id, requestSignature);

  // Events, two blocks, a receipt.
  const created: LedgerEvent = {
    type: 'record.created',
    at: T0,
    recordId,
    ciphertextHash: createHash('sha256').update('payload').digest('hex'),
    headerHash: createHash('sha256').update('header').digest('hex'),
    size: 1234,
    uploader: member.id,
    node: node.id,
    custodian,
  };
  const granted: LedgerEvent[] = ['insurer', 'clinic', 'lab', 'registry'].map((who, i) => ({
    type: 'acl.granted',
    at: T0 + i,
    recordId,
    reader: id(who),
    grantor: member.id,
    purpose: 'treatment',
    expiresAt: T0 + 86_400_000,
  }));
  const first = buildBlock(null, [created, ...granted], node, { time: T0 + 10 });
  const filed: LedgerEvent = {
    type: 'erasure.filed',
    at: T0 + 100,
    requestId,
    dpo,
    scope: 'subject',
    target: subjectCommitment(requestId, subject),
    executeAt: T0 + 100,
  };
  const erased: LedgerEvent = {
    type: 'record.erased',
    at: T0 + 200,
    recordId,
    ciphertextHash: created.ciphertextHash as string,
    dpo,
    requestId,
  };
  const second = buildBlock(first.block.header, [filed, erased], node, { time: T0 + 210 });
  const receipt = makeReceipt(first.block, first.tree, 3);

  // A checkpoint of block 1, signed by both nodes.
  const checkpointOf = checkpointBody(1, blockHash(second.block.header));
  const checkpoint = {
    ...checkpointOf,
    signatures: [signCheckpoint(checkpointOf, node, T0 + 300), signCheckpoint(checkpointOf, peer, T0 + 301)],
  };

  // An erasure certificate of node A, cosigned by node B.
  const certificate = signCertificate(
    {
      requestId,
      filed: makeReceipt(second.block, second.tree, 0),
      scope: { subjectCommitment: filed.target as string },
      dpo,
      executedAt: T0 + 200,
      kms: { backend: 'local', keyId: custodian, confirmed: 'removed from the sealed keystore' },
      records: [
        {
          recordId,
          ciphertextHash: created.ciphertextHash as string,
          stores: [{ ref: `fs:${created.ciphertextHash}`, removed: true, confirmed: 'unlinked and directory synced' }],
          tombstone: makeReceipt(second.block, second.tree, 1),
          created: makeReceipt(first.block, first.tree, 0),
        },
      ],
      consortium: [peer.id],
    },
    node,
  );
  const cosigned = {
    ...certificate,
    parts: [
      signCertificate(
        {
          requestId,
          filed: certificate.filed,
          scope: certificate.scope,
          dpo,
          executedAt: T0 + 250,
          kms: null,
          records: [],
        },
        peer,
      ),
    ],
    cosignatures: [cosignCertificate(certificate, peer, 'tombstones found; no record of the subject held', T0 + 260)],
  };

  const blockVector = (b: { block: Block }) => ({
    header: b.block.header,
    events: b.block.events,
    eventsJson: b.block.events.map(eventJson),
    signedText: `medvault/block/v1\n${canonicalJson({ ...b.block.header, sig: undefined })}`,
    hash: blockHash(b.block.header),
  });

  const invite = {
    version: 1 as const,
    consortium: blockHash(first.block.header),
    ledger: 'etcd://127.0.0.1:2379/medvault',
    inviter: node.id,
    node: peer.id,
    subjectKey: Buffer.from(subjectKey).toString('hex'),
    expiresAt: T0 + 86_400_000,
    nonce: 'ffeeddccbbaa99887766554433221100',
  };

  return {
    about: 'docs/formats.md: every value here is made by medvault from the fixed seeds (test/formats/vectors.ts)',
    keys: {
      node: { seed: b64(node.exportSeed()), publicKey: b64(node.publicKey), id: node.id },
      peer: { seed: b64(peer.exportSeed()), publicKey: b64(peer.publicKey), id: peer.id },
      member: { seed: b64(member.exportSeed()), publicKey: b64(member.publicKey), id: member.id },
    },
    request: {
      ...parts,
      body,
      message: Buffer.from(message).toString('utf8'),
      signature: requestSignature,
      upload: {
        bodySha256: uploadSha,
        message: Buffer.from(trailerMessage).toString('utf8'),
        signature: b64(member.sign(trailerMessage)),
      },
      forward: { message: Buffer.from(forward).toString('utf8'), signature: b64(node.sign(forward)) },
    },
    pseudonym: {
      identifier: 'MRN-0012345',
      key: Buffer.from(subjectKey).toString('hex'),
      pseudonym: subject,
      requestId,
      commitment: filed.target,
    },
    blocks: [blockVector(first), blockVector(second)],
    leaves: first.block.events.map((e) =>
      createHash('sha256')
        .update(Buffer.concat([Buffer.from([0]), Buffer.from(eventJson(e))]))
        .digest('hex'),
    ),
    receipt,
    checkpoint,
    certificate: cosigned,
    memberKeyFile: memberKeyFileText('st-mary', {
      signing: member,
      identity: new X25519Identity(seed('member st-mary age')),
    }),
    invite: { invite, canonical: canonicalJson(invite), digest: inviteDigest(invite) },
  };
}
