/**
 * The one error table of medvault. Every module throws `MedvaultError` with a
 * code from this table; the HTTP API maps `status`, the CLI prints `message`.
 * Codes are stable: clients match on them, so never rename one.
 */
export const ERRORS = {
  INVALID_ARGUMENT: { status: 400, message: 'invalid argument' },

  // Keys and their encodings.
  KEY_INVALID: { status: 400, message: 'malformed key encoding' },

  // age v1 header.
  AGE_NOT_AGE: { status: 400, message: 'input is not an age file' },
  AGE_UNSUPPORTED_VERSION: { status: 400, message: 'unsupported age format version' },
  AGE_HEADER_MALFORMED: { status: 400, message: 'malformed age header' },
  AGE_HEADER_TOO_LARGE: { status: 400, message: 'age header exceeds the stanza or size limit' },
  AGE_HEADER_MAC: { status: 400, message: 'age header MAC does not verify' },
  AGE_STANZA_INVALID: { status: 400, message: 'malformed recipient stanza' },
  AGE_SCRYPT_NOT_ALONE: { status: 400, message: 'an scrypt stanza must be the only stanza' },
  AGE_SCRYPT_WORK_FACTOR: { status: 400, message: 'scrypt work factor above the accepted limit' },
  AGE_WEAK_SHARE: { status: 400, message: 'X25519 share produces an all-zero shared secret' },
  AGE_NO_IDENTITY: { status: 403, message: 'no identity matched any recipient stanza' },

  // age v1 payload.
  AGE_PAYLOAD_TRUNCATED: { status: 400, message: 'age payload is truncated' },
  AGE_PAYLOAD_CORRUPT: { status: 400, message: 'age payload chunk failed authentication' },
  AGE_PAYLOAD_TRAILING_DATA: { status: 400, message: 'data follows the final age payload chunk' },
  AGE_PAYLOAD_EMPTY_CHUNK: { status: 400, message: 'age payload ends with an empty non-initial chunk' },
  AGE_ARMOR_MALFORMED: { status: 400, message: 'malformed ASCII armor' },

  // Merkle trees and proofs.
  MERKLE_ARGUMENT: { status: 400, message: 'malformed Merkle tree argument' },

  // Ledger: events, blocks, receipts, ledgers.
  EVENT_INVALID: { status: 400, message: 'malformed ledger event' },
  BLOCK_INVALID: { status: 400, message: 'ledger block does not verify' },
  RECEIPT_INVALID: { status: 400, message: 'receipt does not verify' },
  CHECKPOINT_INVALID: { status: 400, message: 'ledger checkpoint does not verify' },
  LEDGER_CONFLICT: { status: 409, message: 'another block was appended at this height' },
  LEDGER_UNAVAILABLE: { status: 503, message: 'the ledger is unavailable' },
  LEDGER_OUTCOME_UNKNOWN: {
    status: 503,
    message: 'the ledger did not answer whether the append happened (it may still commit)',
  },
  OUTCOME_PENDING: {
    status: 503,
    message: 'the outcome is not known yet: the node settles it once the ledger answers; ask again later',
  },
  LEDGER_CORRUPT: { status: 500, message: 'the ledger fails verification' },
  STORAGE_FULL: { status: 507, message: 'the disk is full' },
  LEDGER_MISMATCH: { status: 409, message: 'this is not the ledger the node was made on' },
  LEDGER_EMPTY: { status: 404, message: 'the ledger holds no block (a wrong path, prefix or contract?)' },
  LEDGER_REWRITTEN: { status: 409, message: 'the ledger no longer holds a block a checkpoint confirmed' },
  LEDGER_LOCKED: { status: 503, message: 'the ledger file is in use by another process' },
  DATA_IN_USE: { status: 503, message: 'the data directory is in use by another process (a node serving it)' },
  NODE_KEY_RETIRED: {
    status: 409,
    message: "this node's key was handed over to another (node.key): it signs nothing (a keystore from before?)",
  },
  LEDGER_UNAUTHORIZED: { status: 403, message: 'this node may not append to the ledger' },
  LEDGER_FULL: { status: 507, message: 'the ledger has reached its storage quota' },

  // Blob stores.
  STORE_NOT_FOUND: { status: 404, message: 'no such blob in the store' },
  STORE_UNAVAILABLE: { status: 503, message: 'the blob store is unavailable' },
  STORE_TIMEOUT: { status: 504, message: 'the blob store did not answer in time' },
  STORE_AUTH: { status: 502, message: 'the blob store refused the credentials' },
  STORE_INTEGRITY: { status: 502, message: 'the blob store returned bytes that do not match their hash' },
  STORE_BAD_REF: { status: 400, message: 'malformed blob reference' },
  UPLOAD_CONFLICT: {
    status: 409,
    message: 'the upload collided with a failing upload of the same bytes; upload again',
  },

  // Key custody (KMS).
  KMS_LOCKED: { status: 403, message: 'the keystore cannot be opened with this passphrase or key file' },
  KMS_CORRUPT: { status: 500, message: 'the keystore file is damaged' },
  KMS_NO_KEY: { status: 404, message: 'no custodian key for this subject' },
  KMS_KEY_DESTROYED: { status: 410, message: 'the custodian key for this subject was destroyed' },
  BACKUP_KEY_GONE: { status: 410, message: 'the backup key expired and was destroyed: the backup cannot be opened' },
  BACKUP_INVALID: { status: 400, message: 'not an intact medvault backup' },
  KMS_MEMBER_EXISTS: { status: 409, message: 'a member with this name already has keys' },
  KMS_SECRET_EXISTS: { status: 409, message: 'the keystore already holds this consortium secret' },
  KMS_NO_MEMBER: { status: 404, message: 'no member with this name in the keystore' },
  KMS_UNAVAILABLE: { status: 503, message: 'the key-custody token (HSM) is unavailable' },

  // The vault: requests, members, records, erasure.
  REQUEST_INVALID: { status: 400, message: 'malformed request' },
  AUTH_REQUIRED: { status: 401, message: 'the request is not signed by a member key' },
  AUTH_INVALID: { status: 401, message: 'the request signature does not verify' },
  AUTH_EXPIRED: { status: 401, message: 'the signed request is outside its validity window' },
  AUTH_REPLAY: { status: 401, message: 'this signed request was already used' },
  FORBIDDEN: { status: 403, message: 'this member may not do this' },
  NO_GRANT: { status: 403, message: 'no live grant for this member on this record' },
  MEMBER_NOT_FOUND: { status: 404, message: 'no such member' },
  MEMBER_EXISTS: { status: 409, message: 'a member with this name or key already exists' },
  KEY_PROOF_INVALID: { status: 400, message: 'the new key did not sign its rotation' },
  RECORD_NOT_FOUND: { status: 404, message: 'no such record' },
  SUBJECT_NOT_FOUND: { status: 404, message: 'this node holds no record or key of that subject' },
  RECORD_ERASED: { status: 410, message: 'the record was erased' },
  ERASURE_NOT_FOUND: { status: 404, message: 'no such erasure request' },
  COSIGN_REFUSED: { status: 409, message: 'this node cannot confirm the erasure' },
  PEER_UNKNOWN: { status: 502, message: 'the record is held by a node this node has no address for' },
  PEER_UNAVAILABLE: { status: 503, message: 'the node holding the record did not answer' },
  ERASURE_NOT_CANCELLABLE: { status: 409, message: 'the erasure request is not in a state that allows this' },
  REVIEW_NOT_FOUND: { status: 404, message: 'no such break-glass review' },
  CHECKPOINT_NOT_FOUND: { status: 404, message: 'this node has confirmed no ledger checkpoint yet' },
  RATE_LIMITED: { status: 429, message: 'too many requests from this member' },
  EMERGENCY_LIMIT: { status: 429, message: 'the daily limit of break-glass accesses for this member is reached' },
  CERTIFICATE_INVALID: { status: 400, message: 'erasure certificate does not verify' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'the request body is too large' },
  REQUEST_TIMEOUT: { status: 408, message: 'the request did not arrive in time (or its body came too slowly)' },
  URI_TOO_LONG: { status: 414, message: 'the request line is too long' },
  HEADERS_TOO_LARGE: { status: 431, message: 'the request headers are too large' },
  INVITE_INVALID: {
    status: 403,
    message: 'the invite is not for this node, not anchored by a node of the consortium, altered or expired',
  },
  CONSORTIUM_EXISTS: {
    status: 409,
    message: 'the ledger already holds a consortium: join it with an invite (medvault init --join)',
  },
  ADDRESS_LIMITED: { status: 429, message: 'too many failed requests from this address' },

  INTERNAL: { status: 500, message: 'internal error' },
  NODE_UNAVAILABLE: { status: 503, message: 'the vault node cannot be reached' },

  // Local I/O (CLI).
  IO_ERROR: { status: 500, message: 'input/output error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export interface ErrorOptions {
  /** Structured, non-secret details for callers that need them. */
  info?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * A typed error: `code` is stable, `shortMessage` is the table's message,
 * `message` adds the detail of this occurrence. Never put secrets in either.
 */
export class MedvaultError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly shortMessage: string;
  readonly info: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, detail?: string, options: ErrorOptions = {}) {
    const entry = ERRORS[code];
    super(detail ? `${entry.message}: ${detail}` : entry.message, { cause: options.cause });
    this.name = 'MedvaultError';
    this.code = code;
    this.status = entry.status;
    this.shortMessage = entry.message;
    this.info = options.info;
  }
}

export function fail(code: ErrorCode, detail?: string, options?: ErrorOptions): never {
  throw new MedvaultError(code, detail, options);
}

/** Narrows `condition`; throws `code` with `detail` when it does not hold. */
export function check(condition: unknown, code: ErrorCode, detail?: string): asserts condition {
  if (!condition) throw new MedvaultError(code, detail);
}

/**
 * The error a node's answer carries (its JSON body `{code, message}`), for a client: an answer
 * without a code of ours (a node shutting down, a proxy in front of it) is NODE_UNAVAILABLE for
 * 502, 503 and 504, which a client may retry, and INTERNAL otherwise.
 */
export function answerError(
  status: number,
  body: { code?: string; message?: string; recordId?: string; requestId?: string; memberId?: string },
): MedvaultError {
  const untyped = [502, 503, 504].includes(status) ? 'NODE_UNAVAILABLE' : 'INTERNAL';
  const code = (body.code && body.code in ERRORS ? body.code : untyped) as ErrorCode;
  const info = {
    status,
    ...(body.recordId ? { recordId: body.recordId } : {}),
    ...(body.requestId ? { requestId: body.requestId } : {}),
    ...(body.memberId ? { memberId: body.memberId } : {}),
  };
  const error = new MedvaultError(code, undefined, { info });
  if (body.message) (error as { message: string }).message = body.message;
  return error;
}

export function isMedvaultError(err: unknown, code?: ErrorCode): err is MedvaultError {
  return err instanceof MedvaultError && (code === undefined || err.code === code);
}

/**
 * True for an error that means the disk (or the user's quota) is full: ENOSPC or EDQUOT
 * from the file system, SQLITE_FULL from the database.
 */
export function isDiskFull(err: unknown): boolean {
  const e = err as { code?: unknown; errcode?: unknown; message?: unknown } | null;
  return (
    e?.code === 'ENOSPC' ||
    e?.code === 'EDQUOT' ||
    e?.errcode === 13 ||
    (typeof e?.message === 'string' && /database or disk is full/.test(e.message))
  );
}

/** Whether `err` is the disk failing a read, write or sync (EIO; SQLite's SQLITE_IOERR family). */
export function isIoFailure(err: unknown): boolean {
  const e = err as { code?: unknown; errcode?: unknown } | null;
  return e?.code === 'EIO' || (typeof e?.errcode === 'number' && (e.errcode & 0xff) === 10);
}

/**
 * `err` as STORAGE_FULL naming `what` when it means a full disk, IO_ERROR when the disk failed
 * a write or a sync (nothing of the step is kept); otherwise `err` itself.
 */
export function storageFailureAs(err: unknown, what: string): unknown {
  if (isIoFailure(err)) {
    return new MedvaultError('IO_ERROR', `${what} failed a write or sync: ${(err as Error).message}`, { cause: err });
  }
  return diskFullAs(err, `${what} is full`);
}

/** `err` as STORAGE_FULL naming `what` when it means a full disk; otherwise `err` itself. */
export function diskFullAs(err: unknown, what: string): unknown {
  return isDiskFull(err)
    ? new MedvaultError('STORAGE_FULL', `${what}: ${(err as Error).message}`, { cause: err })
    : err;
}
