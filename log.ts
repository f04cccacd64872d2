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
  'reason',
  '*.reason',
];

/** The process logger: JSON lines on stderr; level from MEDVAULT_LOG_LEVEL (default info). */
export const logger: Logger = pino(
  { name: 'medvault', level: process.env.MEDVAULT_LOG_LEVEL ?? 'info', redact: REDACT },
  pino.destination(2),
);
