/**
 * The structured logger (pino) every module uses. Never log plaintext, keys,
 * tokens or identities: the redact list below is a backstop, not a licence.
 */
import { type Logger, pino } from 'pino';

export type { Logger };

export const REDACT = [
  '*.key',
  '*.secret',
  '*.seed',
  '*.identity',
  '*.token',
  '*.passphrase',
  '*.fileKey',
  'authorization',
  'req.headers["medvault-signature"]',
  // Break-glass reasons, by where they could appear (a request body, a review row): not every
  // `reason` key, so that a log line's own reason (why a tail was cut, say) stays readable.
  'body.reason',
  'req.body.reason',
  'review.reason',
  'reviews[*].reason',
];

/** The process logger: JSON lines on stderr; level from MEDVAULT_LOG_LEVEL (default info). */
export const logger: Logger = pino(
  { name: 'medvault', level: process.env.MEDVAULT_LOG_LEVEL ?? 'info', redact: REDACT },
  pino.destination(2),
);
