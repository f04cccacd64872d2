/**
 * A private js-ipfs node for medvault's tests, serving the kubo RPC API
 * (/api/v0) that kubo-rpc-client speaks. Usage:
 *
 *   node launch.mjs REPO_DIR SWARM_KEY_FILE
 *
 * Private: the swarm key goes to libp2p's pre-shared-key connection
 * protector, and there are no bootstrap peers, no DHT, no mDNS, no NAT
 * mapping, no relay, no preload. API and swarm listen on 127.0.0.1 at port 0;
 * once ready, one JSON line is printed: {"api":"http://127.0.0.1:PORT","peerId":…}.
 * SIGTERM stops it. Not a product component: production runs kubo.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { create } from 'ipfs-core';
import { HttpApi } from 'ipfs-http-server';
import { createLibp2p } from 'libp2p';
import { preSharedKey } from 'libp2p/pnet';

const [repo, swarmKeyFile] = process.argv.slice(2);
if (!repo || !swarmKeyFile) {
  console.error('usage: node launch.mjs REPO_DIR SWARM_KEY_FILE');
  process.exit(2);
}
const psk = readFileSync(swarmKeyFile);
// A node killed by SIGKILL leaves its repo lock behind; one launcher per repo, so it is stale.
rmSync(join(repo, 'repo.lock'), { recursive: true, force: true });

const ipfs = await create({
  repo,
  silent: true,
  start: true,
  preload: { enabled: false },
  relay: { enabled: false, hop: { enabled: false } },
  config: {
    Addresses: { Swarm: ['/ip4/127.0.0.1/tcp/0'], API: '/ip4/127.0.0.1/tcp/0', Gateway: '', Delegates: [] },
    Bootstrap: [],
    Discovery: { MDNS: { Enabled: false }, webRTCStar: { Enabled: false } },
    Routing: { Type: 'none' },
    Swarm: { DisableNatPortMap: true },
    Pubsub: { Enabled: false },
  },
  libp2p: ({ libp2pOptions }) =>
    createLibp2p({
      ...libp2pOptions,
      start: false,
      connectionProtector: preSharedKey({ psk }),
      peerDiscovery: [],
      dht: undefined,
      nat: { enabled: false },
      relay: { enabled: false, hop: { enabled: false }, advertise: { enabled: false } },
    }),
});
const api = new HttpApi(ipfs);
await api.start();
for (const server of api._apiServers) {
  server.listener.keepAliveTimeout = 120_000;
  server.listener.headersTimeout = 125_000;
}
const { id } = await ipfs.id();
console.log(JSON.stringify({ api: `http://127.0.0.1:${api._apiServers[0].info.port}`, peerId: id.toString() }));

const stop = async () => {
  await api.stop();
  await ipfs.stop();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
