/**
 * The OpenAPI document of the /v1 API, as a contract: the signing scheme declared (and spelt
 * out in docs/formats.md, with vectors), every member route marked as needing it and the
 * public and node-to-node ones as not, every error a route can answer (each status with the
 * codes of the one error table that carry it), and the upload's body. Routes declare their
 * own success codes; this adds what every route shares.
 */
import { ERRORS } from '../../errors.ts';

export const SIGNATURE_SCHEME = 'medvaultSignature';

const SIGNING = `Every /v1 request (except the public and node-to-node ones) carries five headers: \`medvault-key\` (the member's key id), \`medvault-time\` (ms since the epoch), \`medvault-nonce\` (32 random hex digits), \`medvault-content-sha256\` (hex SHA-256 of the body, or UNSIGNED-PAYLOAD for a streamed upload, which then ends with the \`medvault-body-signature\` trailer) and \`medvault-signature\`: base64 Ed25519 over "medvault-request-v1\\n" METHOD "\\n" PATH?QUERY "\\n" TIME "\\n" NONCE "\\n" BODY-SHA256. Byte by byte, with a worked example and test vectors: docs/formats.md. This page's "Try it out" cannot sign: use the SDK, the CLI or the web console (/console/).`;

export const OPENAPI_INFO = {
  info: {
    title: 'medvault',
    version: '1',
    description: `Encrypted, ledger-anchored document vault for healthcare consortia. ${SIGNING}`,
  },
  components: {
    securitySchemes: {
      [SIGNATURE_SCHEME]: { type: 'apiKey' as const, in: 'header', name: 'medvault-signature', description: SIGNING },
    },
  },
  security: [{ [SIGNATURE_SCHEME]: [] }],
};

/** The statuses a /v1 route may answer with an error, each with the codes that carry it. */
const ERROR_STATUSES: Record<string, string> = {};
for (const [code, { status }] of Object.entries(ERRORS)) {
  if (status < 400) continue;
  ERROR_STATUSES[status] = ERROR_STATUSES[status] ? `${ERROR_STATUSES[status]}, ${code}` : code;
}

const ERROR_BODY = {
  'application/json': {
    schema: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', description: 'a stable code from the error table (errors.ts)' },
        message: { type: 'string' },
        recordId: { type: 'string', description: 'OUTCOME_PENDING: the record to ask about later' },
        requestId: { type: 'string', description: 'OUTCOME_PENDING: the erasure request to ask about later' },
      },
    },
  },
};

const UPLOAD_BODY = {
  required: true,
  description:
    "The age v1 file (header then payload) encrypted on the uploader's machine to the readers, the uploader and the subject's custodian recipient (GET /v1/subjects/{subject}/custodian). Signed UNSIGNED-PAYLOAD with the medvault-body-signature trailer, or by its SHA-256 in medvault-content-sha256.",
  content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
};

interface Operation {
  security?: unknown[];
  responses?: Record<string, { description?: string; content?: unknown }>;
  requestBody?: unknown;
}

/** @fastify/swagger's transform: a public or node-to-node route needs no member signature. */
export function routeTransform(input: { schema: object; url: string; route: { config?: { public?: boolean } } }): {
  schema: object;
  url: string;
} {
  const { schema, url, route } = input;
  return { schema: route.config?.public ? { ...schema, security: [] } : schema, url };
}

/** @fastify/swagger's transformObject: adds what every operation shares. */
export function completeDocument(document: object): never {
  const api = (document as { openapiObject: { paths?: Record<string, Record<string, Operation>> } }).openapiObject;
  for (const [path, operations] of Object.entries(api.paths ?? {})) {
    for (const [method, op] of Object.entries(operations)) {
      if (path === '/v1/records' && method === 'post') op.requestBody = UPLOAD_BODY;
      if (!path.startsWith('/v1/')) continue;
      op.responses ??= {};
      for (const [status, codes] of Object.entries(ERROR_STATUSES)) {
        op.responses[status] ??= { description: codes, content: ERROR_BODY };
        op.responses[status].description = codes;
      }
    }
  }
  return api as never;
}
