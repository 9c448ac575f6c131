// Retry schedules, as pure functions of the attempt count and a random source (tests pass their own).
//   webhooks:   base·2^(n-1), capped at 4 h, equal jitter (half fixed, half random), for up to 24 h after
//               the first attempt; with the default 30 s base that is ~13 attempts.
//   upstream:   transient failures retry after base·3^(n-1) (5 s, 15 s, 45 s by default), jittered.
//   slot waits: a job that finds no free slot looks again after 1, 2, 4 … 30 s, jittered; waiting is not
//               failing, so waits are not counted against the job's attempts.
import { WEBHOOK_WINDOW_MS } from "./config.ts";

export type Random = () => number;

export const WEBHOOK_MAX_DELAY_MS = 4 * 3_600_000;
const UPSTREAM_MAX_DELAY_S = 300;
const SLOT_WAIT_MAX_S = 30;

/** Half the delay is fixed, half random: spreads retries without ever retrying at once. */
function jitter(delay: number, rand: Random): number {
  return delay / 2 + rand() * (delay / 2);
}

/** Delay before webhook attempt n+1 after n failed attempts (n ≥ 1). */
export function webhookDelayMs(failed: number, baseS: number, rand: Random = Math.random): number {
  const raw = Math.min(baseS * 1000 * 2 ** Math.min(Math.max(failed - 1, 0), 30), WEBHOOK_MAX_DELAY_MS);
  return Math.round(jitter(raw, rand));
}

/**
 * When to try a webhook again after `failed` failed attempts, or null when the 24 h window is over. The
 * last attempt lands on the window's end rather than past it.
 */
export function nextWebhookAttempt(
  now: number,
  firstAttemptAt: number,
  failed: number,
  baseS: number,
  rand: Random = Math.random,
): number | null {
  const deadline = firstAttemptAt + WEBHOOK_WINDOW_MS;
  if (now >= deadline) return null;
  return Math.min(now + webhookDelayMs(failed, baseS, rand), deadline);
}

/** Seconds before the next run after `attempts` runs ended in a transient failure (attempts ≥ 1). */
export function upstreamRetryDelayS(attempts: number, baseS: number, rand: Random = Math.random): number {
  const raw = Math.min(baseS * 3 ** Math.min(Math.max(attempts - 1, 0), 10), UPSTREAM_MAX_DELAY_S);
  return Math.max(1, Math.ceil(jitter(raw, rand)));
}

/** Seconds before looking for a free slot again after `waits` waits (waits ≥ 1). */
export function slotWaitDelayS(waits: number, rand: Random = Math.random): number {
  const raw = Math.min(2 ** Math.min(Math.max(waits - 1, 0), 10), SLOT_WAIT_MAX_S);
  return Math.max(1, Math.ceil(jitter(raw, rand)));
}
