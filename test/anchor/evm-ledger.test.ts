/**
 * The EVM ledger on Hardhat 3's in-process EDR network: the shared contract,
 * authorisation, and roots and blocks read back from contract storage and
 * events. (Production runs the same contract on Besu / GoQuorum with QBFT.)
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Contract, JsonRpcProvider } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Batcher } from '../../anchor/batcher.ts';
import { ARTIFACTS } from '../../anchor/contracts/artifacts.ts';
import { deployAnchorContract, EvmLedger } from '../../anchor/evm-ledger.ts';
import { verifyChain } from '../../anchor/ledger.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { isMedvaultError } from '../../errors.ts';
import { CLI } from '../helpers.ts';
import { type EvmChain, startEvmChain } from '../servers/evm.ts';
import { sampleEvent } from './fixtures.ts';
import { ledgerConformance } from './ledger-conformance.ts';

let chain: EvmChain;
beforeAll(async () => {
  chain = await startEvmChain();
});
afterAll(async () => {
  await chain?.close();
});

// A new Anchor contract for each test of the contract suite: each starts from an empty ledger.
ledgerConformance('evm', async () => new EvmLedger(await deployAnchorContract(chain.admin), chain.admin));

describe('evm ledger: the Anchor contract', () => {
  it('an account that is not an authorised anchorer cannot append (the call reverts)', async () => {
    const outsider = new EvmLedger(chain.address, chain.other);
    const before = await outsider.head();
    const err = await new Batcher(outsider, SigningKey.generate()).submit(sampleEvent()).catch((e) => e);
    expect(isMedvaultError(err, 'LEDGER_UNAUTHORIZED')).toBe(true);
    expect(await outsider.head()).toEqual(before);
  });

  it('once the admin authorises it, it can', async () => {
    const admin = new Contract(chain.address, ARTIFACTS.Anchor.abi as never, chain.admin);
    await (await admin.getFunction('setAnchorer')(await chain.other.getAddress(), true)).wait();
    const member = new EvmLedger(chain.address, chain.other);
    const receipt = await new Batcher(member, SigningKey.generate()).submit(sampleEvent('member.added'));
    expect((await member.head())?.height).toBe(receipt.block.height);
  });

  it('roots and blocks read back: storage holds each block hash and root, events carry the blocks', async () => {
    const ledger = new EvmLedger(chain.address, chain.admin);
    const contract = new Contract(chain.address, ARTIFACTS.Anchor.abi as never, chain.provider);
    const summary = await verifyChain(ledger);
    for await (const block of ledger.blocks(0)) {
      const entry = await contract.getFunction('entry').staticCall(block.header.height);
      expect(entry.root).toBe(`0x${block.header.root}`);
      expect(Number(entry.count)).toBe(block.events.length);
    }
    expect(Number(await contract.getFunction('size').staticCall())).toBe(summary.blocks);
  });

  it('medvault ledger verify reads a chain over JSON-RPC (evm://HOST:PORT/0xCONTRACT)', async () => {
    // A chain served over HTTP on 127.0.0.1 (its own instance): deploy and anchor through HTTP too.
    const hostPort = await chain.serve();
    const http = new JsonRpcProvider(`http://${hostPort}`, undefined, { staticNetwork: true });
    try {
      const signer = await http.getSigner(0);
      const address = await deployAnchorContract(signer);
      const batcher = new Batcher(new EvmLedger(address, signer), SigningKey.generate());
      await Promise.all(Array.from({ length: 5 }, () => batcher.submit(sampleEvent())));
      const cli = [CLI, 'ledger', 'verify', '--ledger', `evm://${hostPort}/${address}`];
      const { stdout } = await promisify(execFile)(process.execPath, cli);
      expect(stdout).toMatch(/^ledger OK: 1 blocks, 5 events, head 0 [0-9a-f]{64}\n$/);
    } finally {
      http.destroy();
    }
  });
});
