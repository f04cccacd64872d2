/**
 * Hardhat 3's in-process EDR network for tests: a connection with funded
 * accounts, the Anchor contract deployed, and on request a JSON-RPC server
 * on 127.0.0.1 (random port) for tools that speak HTTP.
 */
import { BrowserProvider, type Signer } from 'ethers';
import { createHardhatRuntimeEnvironment } from 'hardhat/hre';
import { deployAnchorContract } from '../../anchor/evm-ledger.ts';

export interface EvmChain {
  provider: BrowserProvider;
  admin: Signer;
  other: Signer;
  address: string;
  /** Serves the same chain over HTTP on 127.0.0.1; returns its host:port. */
  serve(): Promise<string>;
  close(): Promise<void>;
}

export async function startEvmChain(): Promise<EvmChain> {
  const hre = await createHardhatRuntimeEnvironment({});
  const connection = await hre.network.connect();
  const provider = new BrowserProvider(connection.provider as never);
  const admin = await provider.getSigner(0);
  const other = await provider.getSigner(1);
  const address = await deployAnchorContract(admin);
  const closers: Array<() => Promise<void>> = [() => connection.close()];
  return {
    provider,
    admin,
    other,
    address,
    async serve() {
      const server = await hre.network.createServer('default', '127.0.0.1', 0);
      const { address: host, port } = await server.listen();
      closers.push(() => server.close());
      return `${host}:${port}`;
    },
    async close() {
      for (const close of closers.reverse()) await close();
    },
  };
}
