/**
 * What the shared ledger says about the consortium's other nodes: which node
 * holds a record (every record.created event names it), and which members
 * each node has (every node publishes its own members' public keys in
 * member.added, DESIGN "The consortium"). So any node can forward a reader's
 * fetch to the node that holds the record, and an uploader can name another
 * node's reader without anyone registering that reader by hand.
 *
 * The ledger is read into the metadata store as it is needed: a lookup that
 * misses reads the blocks appended since the last read (one reader at a
 * time), so a record or member anchored a moment ago on another node is
 * found, and an unknown id costs one read of the head.
 *
 * A member is taken only from its own node: the block holding its
 * member.added must be signed by the node the event names (the header's key
 * is that node's id, and its signature verifies), and the key it publishes
 * must be the member's id. Another node anchoring "a member of node B"
 * cannot put one into anybody's directory. Only readers are taken (a member
 * of another node is only ever granted records here), and a member.removed or
 * a key.rotated (its new keys) counts only from that member's own node.
 *
 * The consortium's nodes come from the ledger the same way, by a chain of
 * trust from block 0: the node that signed block 0 founded the consortium; a
 * node.invited counts only in a block signed by a node that has joined; a
 * node.joined only in a block signed by that very node (its key's fingerprint
 * is its id), and only if it founded the consortium or was invited; a
 * node.left only from the node itself; a node.removal is a joined node's
 * vote against another joined node, which is removed once more than half of
 * the other joined nodes voted (each vote counted once; a node invited again
 * starts with none; counted again when a joined node leaves or is removed,
 * as the others are then fewer). A ledger writer outside the consortium
 * cannot make itself anybody's peer, nor put a node out.
 *
 * A node that replaces its key (node.key, in a block its old key signs, the
 * new key's acceptance checked: anchor/trusted-keys.ts) is known by its new
 * id from then on, everywhere this store names it (its row, its readers, the
 * records it holds, its votes); the first hand-over of a key counts, and a
 * block its old key signs after it counts for nothing.
 */
import { type Block, eventsTree, headerSignatureValid } from '../../anchor/block.ts';
import type { LedgerEvent } from '../../anchor/events.ts';
import type { Ledger } from '../../anchor/ledger.ts';
import { makeReceipt } from '../../anchor/receipt.ts';
import { keyLink } from '../../anchor/trusted-keys.ts';
import { keyFingerprint } from '../../crypto/ed25519.ts';
import { X25519Recipient } from '../../crypto/x25519.ts';
import type { ConsortiumNodeRow, LedgerFinding, Metadata, NewMember } from './metadata.ts';

/** Findings are saved every so many while a long read goes on, so it keeps what it has read. */
const SAVE_EVERY = 10_000;

export class ConsortiumIndex {
  readonly #ledger: Ledger;
  readonly #m: Metadata;
  readonly #self: string;
  readonly #onNodes: (nodes: ConsortiumNodeRow[]) => void;
  #reading: Promise<void> | null = null;

  /**
   * `self`: this node's id (its own members and records are never taken from the ledger);
   * `onNodes` is told the consortium's nodes after each read that changed them.
   */
  constructor(
    ledger: Ledger,
    metadata: Metadata,
    self: string,
    onNodes: (nodes: ConsortiumNodeRow[]) => void = () => {},
  ) {
    this.#ledger = ledger;
    this.#m = metadata;
    this.#self = self;
    this.#onNodes = onNodes;
  }

  /** The id of the node holding `recordId`, or undefined when the ledger has no record.created for it. */
  async holder(recordId: string): Promise<string | undefined> {
    const known = this.#m.recordLocation(recordId);
    if (known) return known;
    await this.catchUp();
    return this.#m.recordLocation(recordId);
  }

  /** Reads the blocks appended since the last read; concurrent callers share one read. */
  catchUp(): Promise<void> {
    this.#reading ??= this.#read().finally(() => {
      this.#reading = null;
    });
    return this.#reading;
  }

  async #read(): Promise<void> {
    const head = await this.#ledger.head();
    const from = this.#m.locatorNextHeight();
    if (!head || head.height < from) return;
    let found: LedgerFinding[] = [];
    let nodesChanged = false;
    const nodes = new Map(this.#m.consortiumNodes().map((n) => [n.id, n]));
    const votes = this.#m.nodeVotes();
    // Node keys handed over (node.key): a replaced key speaks for no node again.
    const retired = new Set(this.#m.nodeKeyHistory().map((k) => k.node));
    let founder: string | undefined;
    const founderId = async () => (founder ??= (await this.#ledger.get(0))?.header.signer);
    for await (const block of this.#ledger.blocks(from)) {
      const { height, signer } = block.header;
      let signed: boolean | undefined; // checked once per block, and only for blocks with member events
      const bySigner = () => (signed ??= headerSignatureValid(block.header));
      // A key handed over (node.key) speaks for nobody after its hand-over.
      const byRetired = retired.has(signer);
      for (const event of block.events) {
        if (byRetired) break;
        if (event.type === 'record.created') {
          found.push({ kind: 'location', recordId: event.recordId as string, node: event.node as string, height });
        } else if (event.type === 'member.added' && event.node !== this.#self && event.node === signer) {
          const member = publishedMember(event);
          if (member && bySigner()) found.push({ kind: 'member', member });
        } else if (event.type === 'key.rotated' && signer !== this.#self) {
          const keys = publishedKeys(event, event.newKey);
          if (keys && bySigner()) {
            found.push({ kind: 'rotation', id: event.member as string, node: signer, ...keys, at: event.at });
          }
        } else if (event.type === 'member.removed' && signer !== this.#self && bySigner()) {
          found.push({ kind: 'removal', id: event.member as string, node: signer, at: event.at });
        } else if (event.type === 'node.key' && bySigner()) {
          const handOver = nodeKeyHandOver(block, event, nodes, retired);
          if (handOver) {
            retired.add(handOver.node);
            nodesChanged = renameNode(handOver, nodes, votes) || nodesChanged;
            found.push(handOver);
          }
        } else if (event.type.startsWith('node.') && bySigner()) {
          if (height === 0) founder = signer;
          const vote = event.type === 'node.removal' ? countVote(event, signer, nodes, votes) : null;
          if (vote) found.push({ kind: 'vote', node: event.node as string, voter: signer, at: event.at });
          const node = vote ? vote.removed : nodeChange(event, signer, nodes, await founderId());
          // A node no longer joined is one voter fewer: votes already cast may now be enough.
          const changed = node ? [node, ...(node.state === 'joined' ? [] : recount(nodes, votes, node, event.at))] : [];
          for (const row of changed) {
            nodes.set(row.id, row);
            found.push({ kind: 'node', node: row });
            nodesChanged = true;
          }
          // A node invited again (after it was removed) starts with no votes against it.
          if (node?.state === 'invited' && votes.delete(node.id)) {
            found.push({ kind: 'vote', node: node.id, voter: null, at: event.at });
          }
        }
      }
      if (found.length >= SAVE_EVERY || height >= head.height) {
        this.#m.applyLedgerIndex(found, height + 1);
        found = [];
      }
      if (height >= head.height) break;
    }
    if (nodesChanged) this.#onNodes(this.#m.consortiumNodes());
  }
}

/**
 * What a node.key event in `block` (its signature checked) does: the node that signed it hands
 * its key over (anchor/trusted-keys.ts keyLink), once, to a key no node has; null otherwise.
 */
function nodeKeyHandOver(
  block: Block,
  event: LedgerEvent,
  nodes: ReadonlyMap<string, ConsortiumNodeRow>,
  retired: ReadonlySet<string>,
): Extract<LedgerFinding, { kind: 'nodeKey' }> | null {
  const { signer, height } = block.header;
  const link = keyLink(event, signer, height);
  if (!link || retired.has(link.node) || retired.has(link.successor) || nodes.has(link.successor)) return null;
  const keys = publishedKeys(event, link.successor);
  if (!keys) return null;
  const receipt = makeReceipt(block, eventsTree(block.events), block.events.indexOf(event));
  return { kind: 'nodeKey', ...link, ...keys, receipt };
}

/**
 * The node that handed its key over known by its new id in what this read holds so far (the
 * metadata store renames it when the finding is applied); true when it was a node of the consortium.
 */
function renameNode(
  { node, successor, signingKey, recipient }: Extract<LedgerFinding, { kind: 'nodeKey' }>,
  nodes: Map<string, ConsortiumNodeRow>,
  votes: Map<string, Set<string>>,
): boolean {
  for (const voters of votes.values()) if (voters.delete(node)) voters.add(successor);
  const against = votes.get(node);
  if (against) {
    votes.set(successor, against);
    votes.delete(node);
  }
  const row = nodes.get(node);
  if (!row) return false;
  nodes.delete(node);
  nodes.set(successor, { ...row, id: successor, signingKey, recipient });
  return true;
}

/** The reader a node published in member.added, as a member row here; null when the event publishes none. */
function publishedMember(event: LedgerEvent): NewMember | null {
  const keys = event.role === 'reader' ? publishedKeys(event, event.member) : null;
  if (!keys) return null;
  const node = event.node as string;
  // Names stay off the ledger: another node's member is known here by its ids.
  return {
    id: event.member as string,
    name: `${event.member}@${node}`,
    role: 'reader',
    ...keys,
    node,
    addedAt: event.at,
  };
}

/**
 * The public keys an event publishes (hex), as a member row holds them; null when it
 * publishes none, or a signing key whose fingerprint is not `keyId` (the id the event gives it).
 */
function publishedKeys(event: LedgerEvent, keyId: unknown): { signingKey: string; recipient: string } | null {
  if (typeof event.signingKey !== 'string' || typeof event.recipient !== 'string') return null;
  const key = Buffer.from(event.signingKey, 'hex');
  if (keyFingerprint(key) !== keyId) return null;
  return {
    signingKey: key.toString('base64'),
    recipient: new X25519Recipient(new Uint8Array(Buffer.from(event.recipient, 'hex'))).toString(),
  };
}

/**
 * What a node.* event in a block signed by `signer` (its signature checked)
 * changes about the node it names, whose row so far is `row`; null when it
 * does not count (module comment: the chain of trust from block 0).
 */
function nodeChange(
  event: LedgerEvent,
  signer: string,
  nodes: ReadonlyMap<string, ConsortiumNodeRow>,
  founder: string | undefined,
): ConsortiumNodeRow | null {
  const id = event.node as string;
  const row = nodes.get(id);
  if (event.type === 'node.invited') {
    // Only a node that joined invites; an invite does not undo a join.
    if (nodes.get(signer)?.state !== 'joined' || row?.state === 'joined') return null;
    const invite = { invitedBy: signer, invite: event.invite as string };
    const keys = { signingKey: null, recipient: null, url: null, tls: null };
    return { id, state: 'invited', ...invite, ...keys, since: event.at };
  }
  if (signer !== id) return null; // a node speaks only for itself
  if (event.type === 'node.joined') {
    const key = Buffer.from(event.signingKey as string, 'hex');
    if (keyFingerprint(key) !== id) return null;
    const admitted = row?.state === 'invited' || row?.state === 'joined' || (signer === founder && !row);
    if (!admitted) return null;
    return {
      id,
      state: 'joined',
      invitedBy: row?.invitedBy ?? null,
      invite: row?.invite ?? null,
      signingKey: key.toString('base64'),
      recipient: new X25519Recipient(new Uint8Array(Buffer.from(event.recipient as string, 'hex'))).toString(),
      url: event.url as string,
      tls: (event.tls as string | undefined) ?? null,
      since: row?.state === 'joined' ? row.since : event.at,
    };
  }
  if (event.type === 'node.left' && row?.state === 'joined') return { ...row, state: 'left', since: event.at };
  return null;
}

/**
 * A node.removal in a block signed by `signer`: null when it does not count (the voter or the
 * node it names is not a joined node, or it names the voter itself); else the node it names,
 * removed once more than half of the other joined nodes voted (`votes`, updated), or null.
 */
function countVote(
  event: LedgerEvent,
  signer: string,
  nodes: ReadonlyMap<string, ConsortiumNodeRow>,
  votes: Map<string, Set<string>>,
): { removed: ConsortiumNodeRow | null } | null {
  const id = event.node as string;
  const row = nodes.get(id);
  if (nodes.get(signer)?.state !== 'joined' || signer === id || row?.state !== 'joined') return null;
  const voters = votes.get(id) ?? new Set<string>();
  votes.set(id, voters.add(signer));
  return { removed: voted(row, voters, nodes) ? { ...row, state: 'removed', since: event.at } : null };
}

/** True when more than half of the joined nodes other than `row`'s are among `voters`. */
function voted(row: ConsortiumNodeRow, voters: ReadonlySet<string>, nodes: ReadonlyMap<string, ConsortiumNodeRow>) {
  const others = [...nodes.values()].filter((n) => n.state === 'joined' && n.id !== row.id);
  return others.filter((n) => voters.has(n.id)).length >= votesNeeded(others.length);
}

/**
 * The joined nodes removed because `gone` (its new row) is no longer joined: the votes against
 * them now reach the quorum of the fewer others (and so on, as each removal makes one fewer).
 */
function recount(
  nodes: ReadonlyMap<string, ConsortiumNodeRow>,
  votes: ReadonlyMap<string, ReadonlySet<string>>,
  gone: ConsortiumNodeRow,
  at: number,
): ConsortiumNodeRow[] {
  const now = new Map(nodes).set(gone.id, gone);
  const removed: ConsortiumNodeRow[] = [];
  for (let more = true; more; ) {
    more = false;
    for (const [id, voters] of votes) {
      const row = now.get(id);
      if (row?.state !== 'joined' || !voted(row, voters, now)) continue;
      const out = { ...row, state: 'removed' as const, since: at };
      now.set(id, out);
      removed.push(out);
      more = true;
    }
  }
  return removed;
}

/** The votes that remove a node: more than half of the `others` joined nodes. */
export const votesNeeded = (others: number): number => Math.floor(others / 2) + 1;
