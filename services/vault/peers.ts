/**
 * The consortium's other nodes, as this node knows them: those that joined by
 * invite, as the ledger says (services/vault/consortium-index.ts), and those
 * given by configuration (MEDVAULT_PEERS, for nodes wired by hand; a
 * configured entry wins over the ledger's for the same id). And asking them to confirm something: an erasure
 * certificate or a ledger checkpoint. An answer is kept only if the caller's
 * check accepts it (it verifies a signature by that very peer); a peer that
 * is down, slow or refuses is logged and left out.
 */
import type { Dispatcher } from 'undici';
import { keyFingerprint } from '../../crypto/ed25519.ts';
import { check } from '../../errors.ts';
import { HASH, ID } from '../../formats.ts';
import { logger } from '../../log.ts';
import { pinnedAgent, type TlsIdentity } from '../protocol/tls.ts';

export interface Peer {
  /** The peer node's key id. */
  id: string;
  /** Its API, e.g. http://10.0.0.2:7400. */
  url: string;
  /**
   * Its base64 Ed25519 node key (GET /v1/node says it): needed to accept the
   * fetches it forwards for its members.
   */
  signingKey?: string;
  /**
   * The SHA-256 fingerprint of the TLS certificate it serves with (node.joined): calls to it
   * go over https and accept that certificate only (services/protocol/tls.ts).
   */
  tls?: string;
}

const ASK_TIMEOUT_MS = 10_000;

/**
 * The peer list, checked: an id of 32 hex digits, an http(s) URL and, when
 * given, a base64 Ed25519 key whose fingerprint is that id. INVALID_ARGUMENT
 * naming the entry otherwise.
 */
export function checkPeers(list: unknown): Peer[] {
  check(Array.isArray(list), 'INVALID_ARGUMENT', 'peers is a list of { id, url, signingKey }');
  return list.map((entry: unknown, i) => {
    const peer = (entry ?? {}) as Partial<Record<keyof Peer, unknown>>;
    const at = `peer ${i}`;
    check(typeof peer.id === 'string' && ID.test(peer.id), 'INVALID_ARGUMENT', `${at}: id is 32 hex digits`);
    let url: URL | null = null;
    try {
      url = new URL(String(peer.url));
    } catch {}
    check(url?.protocol === 'http:' || url?.protocol === 'https:', 'INVALID_ARGUMENT', `${at}: url is http(s)://…`);
    if (peer.signingKey !== undefined) {
      const key = Buffer.from(String(peer.signingKey), 'base64');
      check(
        key.length === 32 && key.toString('base64') === peer.signingKey && keyFingerprint(key) === peer.id,
        'INVALID_ARGUMENT',
        `${at}: signingKey is not the base64 Ed25519 key of node ${peer.id}`,
      );
    }
    if (peer.tls !== undefined) {
      check(typeof peer.tls === 'string' && HASH.test(peer.tls), 'INVALID_ARGUMENT', `${at}: tls is a SHA-256 hex`);
      check(url?.protocol === 'https:', 'INVALID_ARGUMENT', `${at}: a node with a TLS pin is called at https://…`);
    }
    return {
      id: peer.id,
      url: String(peer.url),
      ...(peer.signingKey !== undefined ? { signingKey: String(peer.signingKey) } : {}),
      ...(peer.tls !== undefined ? { tls: String(peer.tls) } : {}),
    };
  });
}

export class Peers {
  #configured: Peer[];
  #announced: Peer[] = [];
  #list: Peer[];
  readonly #read: () => Promise<void>;
  readonly #own: TlsIdentity | undefined;
  readonly #agents = new Map<string, Dispatcher>();
  /** How long a peer may take to answer a forwarded request, and at most between two pieces of it. */
  readonly timeoutMs: number;

  /**
   * `read` reads what the ledger says of the nodes since the last read (and calls
   * setAnnounced); `own` is the certificate this node presents to peers that serve TLS.
   */
  constructor(
    list: readonly Peer[] = [],
    read: () => Promise<void> = async () => {},
    own?: TlsIdentity,
    timeoutMs = 30_000,
  ) {
    this.#configured = checkPeers(list);
    this.#list = this.#configured;
    this.#read = read;
    this.#own = own;
    this.timeoutMs = timeoutMs;
  }

  /**
   * How to reach `peer` with fetch: a peer with a TLS pin through a dispatcher that accepts
   * its pinned certificate only and presents this node's; others as they are.
   */
  dispatcher(peer: Peer): Dispatcher | undefined {
    if (!peer.tls) return undefined;
    let agent = this.#agents.get(peer.tls);
    if (!agent) {
      agent = pinnedAgent(peer.tls, this.#own);
      this.#agents.set(peer.tls, agent);
    }
    return agent;
  }

  /** Closes the connections kept to peers. */
  async close(): Promise<void> {
    await Promise.all([...this.#agents.values()].map((a) => a.close()));
    this.#agents.clear();
  }

  /**
   * Brings the list up to date with the ledger before a step that must reach every node
   * (an erasure, a checkpoint) or trust one (a forwarded request, a cosignature). With the
   * ledger unreachable the list is what this node knew (logged).
   */
  async refresh(): Promise<void> {
    await this.#read().catch((err: unknown) => {
      logger.warn({ err: (err as Error).message }, 'the consortium nodes were not read from the ledger');
    });
  }

  get list(): readonly Peer[] {
    return this.#list;
  }

  /**
   * Whether each peer answers its liveness check (GET /healthz, over its pinned TLS when it
   * has one) within `timeoutMs`: what /metrics reports as medvault_peer_up.
   */
  async reachable(timeoutMs = 1_000): Promise<Array<{ id: string; up: boolean }>> {
    return Promise.all(
      this.#list.map(async (peer) => {
        try {
          const response = await fetch(`${peer.url.replace(/\/$/, '')}/healthz`, {
            signal: AbortSignal.timeout(timeoutMs),
            dispatcher: this.dispatcher(peer),
          } as RequestInit);
          await response.body?.cancel();
          return { id: peer.id, up: response.ok };
        } catch {
          return { id: peer.id, up: false };
        }
      }),
    );
  }

  get ids(): string[] {
    return this.#list.map((p) => p.id);
  }

  /** The configured peers (tests wire nodes up with it). */
  set(list: readonly Peer[]): void {
    this.#configured = checkPeers(list);
    this.#merge();
  }

  /** The nodes the ledger says joined (and have not left), this node excluded. */
  setAnnounced(list: readonly Peer[]): void {
    this.#announced = checkPeers(list);
    this.#merge();
  }

  #merge(): void {
    const configured = new Set(this.#configured.map((p) => p.id));
    this.#list = [...this.#configured, ...this.#announced.filter((p) => !configured.has(p.id))];
  }

  get(id: string): Peer | undefined {
    return this.#list.find((p) => p.id === id);
  }

  /**
   * POSTs `body` as JSON to `path` on each peer not in `skip`, all at once;
   * returns the answers `accept` took (it throws or returns false for an
   * answer that does not verify as that peer's), in the peers' order.
   */
  async ask<T>(
    path: string,
    body: unknown,
    context: Record<string, unknown>,
    accept: (peer: Peer, answer: T) => boolean,
    skip: readonly string[] = [],
  ): Promise<T[]> {
    await this.refresh();
    const answers = await Promise.all(
      this.#list
        .filter((peer) => !skip.includes(peer.id))
        .map((peer) => this.#askOne(peer, path, body, context, accept)),
    );
    return answers.filter((a): a is Awaited<T> => a !== undefined) as T[];
  }

  async #askOne<T>(
    peer: Peer,
    path: string,
    body: unknown,
    context: Record<string, unknown>,
    accept: (peer: Peer, answer: T) => boolean,
  ): Promise<T | undefined> {
    try {
      const response = await fetch(`${peer.url.replace(/\/$/, '')}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(ASK_TIMEOUT_MS),
        dispatcher: this.dispatcher(peer),
      } as RequestInit);
      const answer = (await response.json()) as T & { code?: string };
      if (!response.ok) {
        logger.warn({ ...context, peer: peer.id, code: answer.code }, 'peer refused to confirm');
        return undefined;
      }
      if (!accept(peer, answer)) throw new Error('the answer is not signed by that peer');
      return answer;
    } catch (err) {
      logger.warn({ ...context, peer: peer.id, err: (err as Error).message }, 'no confirmation from peer');
      return undefined;
    }
  }
}
