// Settle phase: one usage record per upstream call, and the release of its slots, exactly once on every
// path. Nothing here may throw: a record that cannot be computed from what GLM said is estimated (from the
// messages, else from the body's size), and the release runs whatever the estimate or the ledger did.
import type { ModelEntry } from "../catalog/schema.ts";
import { log } from "../shared/log.ts";
import type { Verdict } from "../limiter/block.ts";
import type { Slot } from "../keys/slot.ts";
import type { GlmUsage } from "../upstream/sse-observer.ts";
import { costNano, type TokenUsage } from "../usage/cost.ts";
import { estimatePromptTokens } from "../usage/estimate.ts";
import type { Ending, UsageRecord } from "../usage/ledger.ts";

/** What is known about a call before it is sent. */
export interface CallFacts {
  /** Unique per upstream call: the ledger drops a second record with the same id. */
  id: string;
  requestId: string;
  startedAt: number;
  /** The model as admitted: its price is the one billed, whatever the catalog says later. */
  model: ModelEntry;
  kind: UsageRecord["kind"];
  stream: boolean;
  /** The request's messages, for an estimate when GLM reports no usage. */
  messages: unknown;
  /** Size of the body sent: the estimate of last resort. */
  bodyBytes: number;
  /** The upstream account the call went to, and which attempt of its request it was (1 for the first). */
  account?: string;
  attempt?: number;
}

/** How a call ended, as observed. */
export interface EndFacts {
  status: number;
  ended: Ending;
  usage?: GlmUsage | undefined;
  /** SSE events received: about one completion token each when GLM sent no usage. */
  events?: number;
  done?: boolean;
  /**
   * GLM never answered this attempt and another attempt followed: it is recorded (status, ending) but not
   * billed, so a caller pays once for a request however many attempts it took.
   */
  superseded?: boolean;
}

export type Estimator = (messages: unknown) => number;

/** About four bytes of JSON per token: cruder than the message estimate, but it cannot fail. */
const BYTES_PER_TOKEN = 4;

function count(n: unknown): number {
  return typeof n === "number" && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

export function tokensFrom(u: GlmUsage | undefined): TokenUsage | undefined {
  if (!u || typeof u.prompt_tokens !== "number" || typeof u.completion_tokens !== "number") return undefined;
  return {
    prompt_tokens: count(u.prompt_tokens),
    completion_tokens: count(u.completion_tokens),
    cached_tokens: count(u.prompt_tokens_details?.cached_tokens),
  };
}

/**
 * The usage record of one call. GLM's usage when it reported one; nothing for a call GLM refused (an error
 * answer costs nothing); otherwise an estimate, flagged: the call may have been processed upstream.
 */
export function usageRecord(call: CallFacts, end: EndFacts, estimate: Estimator = estimatePromptTokens): UsageRecord {
  const reported = tokensFrom(end.usage);
  const refused =
    reported === undefined && ((end.ended === "upstream_error" && end.status >= 400) || end.superseded === true);
  let tokens = reported;
  if (!tokens) {
    let prompt = 0;
    if (!refused) {
      try {
        prompt = count(estimate(call.messages));
      } catch (err) {
        prompt = Math.ceil(call.bodyBytes / BYTES_PER_TOKEN);
        log({
          level: "warn",
          msg: "usage estimate failed; estimated from the body's size",
          request_id: call.requestId,
          error: String(err),
        });
      }
    }
    const completion = refused ? 0 : Math.max(0, count(end.events) - (end.done ? 1 : 0));
    tokens = { prompt_tokens: prompt, completion_tokens: completion, cached_tokens: 0 };
  }
  let cost = 0;
  try {
    cost = count(costNano(call.model.pricing, tokens));
  } catch {
    // A catalog price that cannot be used: the tokens are still recorded.
  }
  return {
    id: call.id,
    request_id: call.requestId,
    ts: call.startedAt,
    model: call.model.id,
    kind: call.kind,
    stream: call.stream,
    status: end.status,
    ended: end.ended,
    ...tokens,
    cost_nano: cost,
    estimated: reported === undefined && !refused,
    account: call.account ?? "default",
    attempt: call.attempt ?? 1,
  };
}

/**
 * Records and releases, with how the attempt went for its account's circuit. Never rejects: the slot's
 * release retries, and a lost release lapses with its lease.
 */
export async function settle(slot: Slot, record: UsageRecord, verdict: Verdict = "neutral"): Promise<void> {
  try {
    await slot.release(record, verdict);
  } catch (err) {
    log({ level: "error", msg: "settling a call failed", request_id: record.request_id, error: String(err) });
  }
}
