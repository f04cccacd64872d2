/**
 * npm run bench:redaction [-- --blocks N --json]
 *
 * The cost of chameleon-hash links (experiments/redaction/redactable.ts) against the
 * SHA-256 links of the ledger (anchor/block.ts), on the same events: per
 * link (hash and verify the link alone), per block (build and verify, with
 * the Ed25519 signature both carry), one redaction (decrypt the trapdoor,
 * compute the collision), and verifying a whole chain of N blocks (default
 * 10,000) of 4 events. For docs/redaction-experiment.md.
 */
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { type Block, buildBlock, verifyBlock } from '../../anchor/block.ts';
import type { LedgerEvent } from '../../anchor/events.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { chameleonHash, chameleonKeygen, randomScalar } from '../../experiments/redaction/chameleon.ts';
import {
  blockMessage,
  buildRedactableBlock,
  type RedactableBlock,
  redactEvent,
  verifyRedactableChain,
} from '../../experiments/redaction/redactable.ts';
import { sampleEvent } from '../anchor/fixtures.ts';

const { values } = parseArgs({
  options: { blocks: { type: 'string', default: '10000' }, json: { type: 'boolean', default: false } },
});
const N = Number(values.blocks);
const signer = SigningKey.generate();
const dpo = X25519Identity.generate();
const batches: LedgerEvent[][] = Array.from({ length: N }, () => [
  sampleEvent('record.created'),
  sampleEvent('acl.granted'),
  sampleEvent('record.accessed'),
  sampleEvent('access.emergency'),
]);

function time<T>(run: () => T): { ms: number; value: T } {
  const t = performance.now();
  const value = run();
  return { ms: performance.now() - t, value };
}

// Whole chains.
const shaBuild = time(() => {
  const out: Block[] = [];
  for (const events of batches) out.push(buildBlock(out.at(-1)?.header ?? null, events, signer).block);
  return out;
});
const shaVerify = time(() => {
  let previous: Block['header'] | null = null;
  for (const block of shaBuild.value) {
    verifyBlock(block, previous);
    previous = block.header;
  }
});
const chBuild = time(() => {
  const out: RedactableBlock[] = [];
  for (const events of batches)
    out.push(buildRedactableBlock(out.at(-1)?.header ?? null, events, signer, dpo.recipient));
  return out;
});
const chVerify = time(() => verifyRedactableChain(chBuild.value));
const REDACTIONS = 50;
const redact = time(() => {
  for (let i = 0; i < REDACTIONS; i++) {
    const index = Math.floor((i * N) / REDACTIONS);
    chBuild.value[index] = redactEvent(chBuild.value[index] as RedactableBlock, 3, sampleEvent('access.emergency'), [
      dpo,
    ]);
  }
});
const afterRedactions = time(() => verifyRedactableChain(chBuild.value));
// Links alone (after the chains: warm code and tables).
const message = blockMessage(1, 'ab'.repeat(32), batches[0] as LedgerEvent[]);
const { publicKey } = chameleonKeygen();
const r = randomScalar();
const LINKS = 2000;
const shaLink =
  time(() => {
    for (let i = 0; i < LINKS; i++) createHash('sha256').update(message).digest();
  }).ms / LINKS;
const chLink =
  time(() => {
    for (let i = 0; i < LINKS / 10; i++) chameleonHash(publicKey, message, r);
  }).ms /
  (LINKS / 10);

const bytesPerBlock = (blocks: unknown[]) => Math.round(Buffer.byteLength(JSON.stringify(blocks)) / blocks.length);

const results = {
  blocks: N,
  linkMicros: { sha256: shaLink * 1000, chameleon: chLink * 1000 },
  buildMsPerBlock: { sha256: shaBuild.ms / N, chameleon: chBuild.ms / N },
  verifyChainSeconds: { sha256: shaVerify.ms / 1000, chameleon: chVerify.ms / 1000 },
  redactMs: redact.ms / REDACTIONS,
  verifyAfterRedactionsSeconds: afterRedactions.ms / 1000,
  headerBytesPerBlock: { sha256: bytesPerBlock(shaBuild.value), chameleon: bytesPerBlock(chBuild.value) },
};
const f = (n: number, d = 2) => n.toFixed(d);
console.log(`${N} blocks of 4 events`);
console.log(
  `link alone:        SHA-256 ${f(results.linkMicros.sha256)} µs, chameleon ${f(results.linkMicros.chameleon)} µs`,
);
console.log(
  `build, per block:  SHA-256 ${f(results.buildMsPerBlock.sha256, 3)} ms, chameleon ${f(results.buildMsPerBlock.chameleon, 3)} ms`,
);
console.log(
  `verify the chain:  SHA-256 ${f(results.verifyChainSeconds.sha256)} s, chameleon ${f(results.verifyChainSeconds.chameleon)} s`,
);
console.log(`one redaction:     ${f(results.redactMs)} ms (decrypt the trapdoor, collide)`);
console.log(
  `verify after ${REDACTIONS} redactions: ${f(results.verifyAfterRedactionsSeconds)} s (the chain still verifies)`,
);
console.log(
  `stored per block (JSON): SHA-256 ${results.headerBytesPerBlock.sha256} B, chameleon ${results.headerBytesPerBlock.chameleon} B`,
);
if (values.json) console.log(JSON.stringify(results));
