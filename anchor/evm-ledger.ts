/**
 * The ledger on an EVM chain, for consortia already on Hyperledger Besu or
 * GoQuorum with QBFT: the `Anchor` contract (contracts/Anchor.sol) stores
 * each block's hash and Merkle root, appended with compare-and-swap on the
 * head by authorised anchorers only, and emits the block itself in its
 * `Anchored` event, from which `get` reads it back and checks it against the
 * stored hash.
 *
 * Each block is one transaction, so a run of several blocks is appended one
 * by one (each still compare-and-swap): if a later one fails, the earlier
 * ones stay, which the batcher treats as a failed append (at-least-once, as
 * on any ledger whose outcome is unknown). Keep blocks small on real chains
 * (transaction pools cap transaction size, often at 128 KiB: about 250
 * events). medvault never reads chain block timestamps, so GoQuorum's Raft
 * mode, which reports them in nanoseconds, does not trip ethers here; QBFT is
 * the supported and tested-for mode.
 */
import { Contract, ContractFactory, type ContractRunner, type Interface, type Signer } from 'ethers';
import { fail, isMedvaultError } from '../errors.ts';
import { type Block, type BlockHeader, blockHash } from './block.ts';
import { ARTIFACTS } from './contracts/artifacts.ts';
import { checkRun, type Ledger } from './ledger.ts';

const { abi, bytecode } = ARTIFACTS.Anchor;
const bytes32 = (hex: string) => `0x${hex}`;

/** Deploys a fresh Anchor contract; the deployer is its admin and first anchorer. */
export async function deployAnchorContract(signer: Signer): Promise<string> {
  const contract = await new ContractFactory(abi as never, bytecode, signer).deploy();
  await contract.waitForDeployment();
  return contract.getAddress();
}

interface Entry {
  blockHash: string;
  root: string;
  count: bigint;
  anchorer: string;
}

export class EvmLedger implements Ledger {
  readonly kind = 'evm' as const;
  readonly #contract: Contract;
  readonly #interface: Interface;

  /** `runner` is a Signer to append, or a Provider to read only. */
  constructor(address: string, runner: ContractRunner) {
    this.#contract = new Contract(address, abi as never, runner);
    this.#interface = this.#contract.interface;
  }

  async #call<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (isMedvaultError(err)) throw err;
      return fail('LEDGER_UNAVAILABLE', `evm: ${what}: ${(err as Error).message.slice(0, 200)}`);
    }
  }

  async #size(): Promise<number> {
    return Number(await this.#call('read size', () => this.#contract.getFunction('size').staticCall()));
  }

  async head(): Promise<BlockHeader | null> {
    const size = await this.#size();
    return size === 0 ? null : ((await this.get(size - 1)) as Block).header;
  }

  async get(height: number): Promise<Block | null> {
    if (!Number.isSafeInteger(height) || height < 0 || height >= (await this.#size())) return null;
    const entry = (await this.#call('read entry', () =>
      this.#contract.getFunction('entry').staticCall(height),
    )) as Entry;
    const filter = this.#contract.filters.Anchored?.(height, entry.blockHash);
    const logs = await this.#call('read block', () => this.#contract.queryFilter(filter as never, 0, 'latest'));
    for (const log of logs) {
      const parsed = this.#interface.parseLog(log);
      if (!parsed) continue;
      const block = JSON.parse(Buffer.from((parsed.args.block as string).slice(2), 'hex').toString('utf8')) as Block;
      if (bytes32(blockHash(block.header)) === entry.blockHash) return block;
    }
    return fail('LEDGER_CORRUPT', `evm: no Anchored event carries block ${height} with the stored hash`);
  }

  async *blocks(from = 0): AsyncIterable<Block> {
    const size = await this.#size();
    for (let height = Math.max(0, from); height < size; height++) yield (await this.get(height)) as Block;
  }

  async append(blocks: readonly Block[]): Promise<void> {
    checkRun(blocks);
    for (const block of blocks) await this.#appendOne(block);
  }

  async #appendOne(block: Block): Promise<void> {
    const { header } = block;
    const hash = bytes32(blockHash(header));
    const payload = Buffer.from(JSON.stringify(block), 'utf8');
    try {
      const tx = await this.#contract.getFunction('anchor')(
        header.height,
        bytes32(header.prev),
        hash,
        bytes32(header.root),
        header.count,
        payload,
      );
      await tx.wait();
    } catch (err) {
      const reason = this.#revertReason(err);
      if (reason === 'StaleHead' || reason === 'BrokenLink') {
        fail('LEDGER_CONFLICT', `evm: block ${header.height} does not extend the contract's head (${reason})`);
      }
      if (reason === 'NotAnchorer') fail('LEDGER_UNAUTHORIZED', 'evm: this account is not an authorised anchorer');
      // Unknown outcome: the block may have been mined. Look before giving up.
      const entry = await this.#contract
        .getFunction('entry')
        .staticCall(header.height)
        .catch(() => null);
      if (entry && (entry as Entry).blockHash === hash) return;
      // (No `cause`: the provider's error carries the whole calldata.)
      fail('LEDGER_UNAVAILABLE', `evm: append of block ${header.height}: ${(err as Error).message.slice(0, 200)}`);
    }
  }

  /**
   * The name of the contract's custom error in a revert, if that is what `err`
   * is. Providers put the revert data in different places: on the error, in
   * its `info.error` (JSON-RPC error object) or in `error`.
   */
  #revertReason(err: unknown): string | null {
    const e = err as { data?: unknown; info?: { error?: { data?: unknown } }; error?: { data?: unknown } };
    for (const data of [e.data, e.info?.error?.data, e.error?.data]) {
      if (typeof data !== 'string' || !data.startsWith('0x')) continue;
      try {
        const name = this.#interface.parseError(data)?.name;
        if (name) return name;
      } catch {
        // not one of ours
      }
    }
    return null;
  }

  /** The provider belongs to the caller, who closes it; nothing to release here. */
  async close(): Promise<void> {}
}
