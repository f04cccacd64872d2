/**
 * A TLS-terminating proxy on 127.0.0.1, as an operator puts in front of kubo's RPC API
 * (kubo serves it over plain HTTP only): TLS with the given certificate on its own port,
 * bytes passed to and from the plain port behind it.
 */
import { connect, type Socket } from 'node:net';
import { createServer } from 'node:tls';

export interface TlsProxy {
  port: number;
  stop(): Promise<void>;
}

export async function startTlsProxy(target: number, identity: { cert: Buffer; key: Buffer }): Promise<TlsProxy> {
  const sockets = new Set<Socket>();
  const server = createServer({ cert: identity.cert, key: identity.key }, (client) => {
    const upstream = connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  server.on('tlsClientError', () => {}); // a client refusing the certificate: its own affair
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    stop: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
