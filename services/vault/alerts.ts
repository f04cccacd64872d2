/**
 * The DPO's break-glass alert by webhook: each access is POSTed at once, as
 * JSON, to the URL the operator configured (`breakGlass.webhook` in
 * medvault.json, or MEDVAULT_BREAK_GLASS_WEBHOOK): review id, record id,
 * member id, time, this node's id and the access's ledger receipt. Never the
 * reason (it stays on the node, for the DPO's review). A failed delivery is
 * tried once more after a second and then logged; the access itself is
 * anchored and queued for review whatever the webhook does.
 */
import { check } from '../../errors.ts';
import { logger } from '../../log.ts';
import type { EmergencyAlert } from './vault.ts';

const TIMEOUT_MS = 5_000;
const RETRY_AFTER_MS = 1_000;

export function checkWebhookUrl(url: string): string {
  let parsed: URL | null = null;
  try {
    parsed = new URL(url);
  } catch {}
  check(
    parsed?.protocol === 'http:' || parsed?.protocol === 'https:',
    'INVALID_ARGUMENT',
    'the break-glass webhook is an http(s) URL',
  );
  return url;
}

/** A listener for Vault.onEmergency that POSTs each alert to `url`. */
export function webhookAlerts(url: string, nodeId: string): (alert: EmergencyAlert) => void {
  checkWebhookUrl(url);
  const post = async (body: string) => {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
  };
  return (alert) => {
    const body = JSON.stringify({ type: 'medvault.break-glass', node: nodeId, ...alert });
    void post(body)
      .catch(async () => {
        await new Promise((r) => setTimeout(r, RETRY_AFTER_MS));
        await post(body);
      })
      .catch((err: Error) => {
        logger.error({ reviewId: alert.reviewId, error: err.message }, 'the break-glass webhook could not be reached');
      });
  };
}
