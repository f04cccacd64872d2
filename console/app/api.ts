/**
 * The console's client of the node's /v1 API: every request signed in this page with the
 * member's key, exactly as the SDK signs it (services/protocol/signing.ts), and everything the
 * node sends back verified here before it is shown: receipts against the node's and its peers'
 * keys, served ciphertext against its anchored hash, certificates, reports, blocks.
 */
import { followHistory } from '../../anchor/key-history.ts';
import type { Receipt } from '../../anchor/receipt.ts';
import { verifyReceipt } from '../../anchor/receipt.ts';
import type { TrustedKeys } from '../../anchor/trusted-keys.ts';
import { answerError, MedvaultError } from '../../errors.ts';
import { openSecret } from '../../services/protocol/invites.ts';
import { type MemberCredentials, memberIdOf } from '../../services/protocol/member-keys.ts';
import { pseudonym } from '../../services/protocol/pseudonym.ts';
import { signRequest, signRequestHash } from '../../services/protocol/signing.ts';
import type { MemberRow, NodeInfo } from '../../services/protocol/views.ts';

const HASH = /^[0-9a-f]{64}$/;

export class Api {
  readonly keys: MemberCredentials;
  me: MemberRow | undefined;
  #node: NodeInfo | undefined;
  #trusted: TrustedKeys | undefined;
  #members: MemberRow[] = [];
  #subjectKey: Uint8Array | undefined;

  constructor(keys: MemberCredentials) {
    this.keys = keys;
  }

  /** Signs in: the node must know this key as an active member. */
  async signIn(): Promise<MemberRow> {
    this.#node = await this.publicJson<NodeInfo>('/v1/node');
    this.#trusted = undefined;
    await this.refreshMembers();
    const me = this.#members.find((m) => m.id === memberIdOf(this.keys) && m.removedAt === null);
    if (!me) throw new MedvaultError('AUTH_INVALID', 'this key is not an active member of this node');
    this.me = me;
    return me;
  }

  get node(): NodeInfo {
    return this.#node as NodeInfo;
  }

  /**
   * The node keys whose receipts this page accepts: the node and the peers it names, followed
   * through the key hand-overs it names (each checked here).
   */
  get trusted(): TrustedKeys {
    this.#trusted ??= followHistory([this.node.id, ...(this.node.peers ?? [])], this.node.keyHistory ?? []);
    return this.#trusted;
  }

  async refreshMembers(): Promise<MemberRow[]> {
    this.#members = (await this.json<{ members: MemberRow[] }>('GET', '/v1/members')).members;
    return this.#members;
  }

  get members(): MemberRow[] {
    return this.#members;
  }

  /** A member's name, or its id when this node's directory does not know it. */
  name(id: string | null | undefined): string {
    if (!id) return '';
    return this.#members.find((m) => m.id === id)?.name ?? id;
  }

  async publicJson<T>(path: string): Promise<T> {
    return (await checked(await fetch(path))).json() as Promise<T>;
  }

  /** A signed request; rejects with the node's typed error. */
  async request(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    const json = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = signRequest(this.keys.signing, method, path, json);
    if (json !== undefined) headers['content-type'] = 'application/json';
    return checked(
      await fetch(path, {
        method,
        headers,
        ...(json !== undefined ? { body: json } : {}),
        ...(signal ? { signal } : {}),
      }),
    );
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.request(method, path, body);
    return (response.status === 204 ? undefined : await response.json()) as T;
  }

  verify(receipt: Receipt): Receipt {
    verifyReceipt(receipt, { trusted: this.trusted });
    return receipt;
  }

  /**
   * A subject as the node sees it: a 64-hex pseudonym as given, or a patient identifier turned
   * into its pseudonym here with the consortium's subject key (sealed to this member's key).
   */
  async subject(value: string): Promise<string> {
    const v = value.trim();
    if (HASH.test(v)) return v;
    if (!v) throw new MedvaultError('INVALID_ARGUMENT', 'give a patient identifier or a pseudonym');
    if (!this.#subjectKey) {
      const { sealed } = await this.json<{ sealed: string }>('GET', '/v1/consortium/subject-key');
      this.#subjectKey = openSecret(sealed, this.keys.identity);
    }
    return pseudonym(v, this.#subjectKey);
  }

  /**
   * Sends an upload held whole (a browser cannot send the trailer the SDK signs a stream
   * with): the request signs the body's SHA-256, which the node checks as the bytes arrive.
   * XMLHttpRequest, for its upload progress and abort.
   */
  upload(
    path: string,
    body: Blob,
    sha256: string,
    onProgress: (sent: number) => void,
    signal: AbortSignal,
  ): Promise<unknown> {
    const headers = signRequestHash(this.keys.signing, 'POST', path, sha256);
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new MedvaultError('INVALID_ARGUMENT', 'upload cancelled'));
      const xhr = new XMLHttpRequest();
      xhr.open('POST', path);
      for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
      xhr.setRequestHeader('content-type', 'application/octet-stream');
      xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => {
        let parsed: { code?: string; message?: string } = {};
        try {
          parsed = JSON.parse(xhr.responseText);
        } catch {}
        if (xhr.status >= 200 && xhr.status < 300) resolve(parsed);
        else reject(answerError(xhr.status, parsed));
      };
      xhr.onerror = () => reject(new MedvaultError('NODE_UNAVAILABLE', 'the upload was cut off'));
      xhr.onabort = () => reject(new MedvaultError('INVALID_ARGUMENT', 'upload cancelled'));
      signal.addEventListener('abort', () => xhr.abort());
      xhr.send(body);
    });
  }
}

async function checked(response: Response): Promise<Response> {
  if (response.ok) return response;
  let parsed: { code?: string; message?: string } = {};
  try {
    parsed = await response.json();
  } catch {}
  throw answerError(response.status, parsed);
}
