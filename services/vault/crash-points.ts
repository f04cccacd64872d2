/**
 * Crash points for the fault suite (test/faults/kill.test.ts), as etcd's failpoints:
 * with MEDVAULT_TEST_CRASH_AT=upload.anchored (comma-separated names) the process
 * SIGKILLs itself when an upload reaches that step, as a power cut or the OOM killer
 * would, so the suite can check what a restart makes of each step. Unset (always,
 * outside the suite), each point is one lookup in an empty set.
 */
import { logger } from '../../log.ts';

/**
 * The steps of an upload, in order: blob stored; row kept pending; anchored; active (before the
 * answer). A key rotation anchored and applied, its first header rewrapped and the rest not.
 * A node key hand-over with the next keys kept and nothing anchored; anchored, the keys not switched.
 */
export type CrashPoint =
  | 'upload.stored'
  | 'upload.pending'
  | 'upload.anchored'
  | 'upload.active'
  | 'rotation.rewrapping'
  | 'node-key.prepared'
  | 'node-key.anchored';

const armed = new Set((process.env.MEDVAULT_TEST_CRASH_AT ?? '').split(',').filter(Boolean));
if (armed.size > 0)
  logger.warn({ points: [...armed] }, 'crash points armed (MEDVAULT_TEST_CRASH_AT): for the fault suite only');

export function crashPoint(name: CrashPoint): void {
  if (armed.has(name)) process.kill(process.pid, 'SIGKILL');
}
