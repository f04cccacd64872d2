import { BrowserProvider } from 'ethers';
import { createHardhatRuntimeEnvironment } from 'hardhat/hre';

const t = performance.now();
const hre = await createHardhatRuntimeEnvironment({});
const conn = await hre.network.connect();
const provider = new BrowserProvider(conn.provider as never);
const signer = await provider.getSigner(0);
console.log(
  'connected in',
  (performance.now() - t).toFixed(0),
  'ms',
  await signer.getAddress(),
  await provider.getBlockNumber(),
);
await conn.close();
