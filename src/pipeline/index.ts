// The request pipeline: the life of every upstream call the gateway makes — chat (plain and streamed), each
// call of a summary, each async-job run — in four phases:
//   admit   the credential, the budget, the key's slot and an upstream slot at one of the accounts
//           (keys/slot.ts picks the account through the key's object);
//   call    GLM, with a header timeout, the leases kept alive while it thinks, cancelled if the caller goes;
//           a failure before the first byte is retried on another account, or the same after a backoff,
//           then on the fallback models (see send());
//   relay   GLM's bytes passed on unchanged while usage and the ending are observed (relay.ts);
//   settle  one usage record per attempt and the release, exactly once, on every path (settle.ts).
// Callers get a typed Outcome; none of them reads another's HTTP response or headers to learn what happened.
import type { Credential } from "../auth/credentials.ts";
import { refusal } from "../auth/refusal.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import { getCatalog } from "../catalog/store.ts";
import { resolveModel } from "../catalog/rules.ts";
import { readAccounts, readConfig, type Account, type GatewayConfig } from "../config.ts";
import { Codes, errorBody, GatewayError } from "../errors.ts";
import type { WaitUntil } from "../shared/wait-until.ts";
import type { Verdict } from "../limiter/block.ts";
import { LEASE_RENEW_MS, LEASE_TTL_MS } from "../limiter/leases.ts";
import { poolsFor, type CircuitConfig } from "../limiter/pools.ts";
import { acquireSlot, type Slot } from "../keys/slot.ts";
import { callUpstream, upstreamErrorBody, type UpstreamResponse } from "../upstream/client.ts";
import type { GlmUsage } from "../upstream/sse-observer.ts";
import { costNano } from "../usage/cost.ts";
import type { Ending, UsageRecord } from "../usage/ledger.ts";
import { log } from "../shared/log.ts";
import { clientStatus } from "./glm-codes.ts";
import { relaySse, type RelayOutcome } from "./relay.ts";
import { settle, usageRecord, type CallFacts, type EndFacts } from "./settle.ts";

export type { Slot } from "../keys/slot.ts";

export interface AdmitRequest {
  env: Env;
  cred: Credential;
  model: ModelEntry;
  /** How long to wait in line for a slot (x-queue-timeout-ms); 0 answers 429 at once. */
  queueTimeoutMs: number;
  origin: string | null;
  /** The caller's signal: a caller that leaves while waiting is never admitted. */
  signal: AbortSignal | null;
  /** The most the call may use: its prompt (estimated) and its output limit; held against a key's budget. */
  worstCase?: { promptTokens: number; maxOutputTokens: number | undefined };
}

/** The reservation for a call's worst case: the estimated prompt and every allowed output token, at list price. */
function reservation(model: ModelEntry, worst: NonNullable<AdmitRequest["worstCase"]>) {
  const output = worst.maxOutputTokens ?? model.max_output_tokens;
  const tokens = { prompt_tokens: worst.promptTokens, completion_tokens: output, cached_tokens: 0 };
  return { cost_nano: costNano(model.pricing, tokens), tokens: worst.promptTokens + output };
}

const circuitOf = (cfg: GatewayConfig): CircuitConfig => ({
  failures: cfg.circuitFailures,
  cooldownMs: cfg.circuitCooldownMs,
});

/** The model's upstream pools over every configured account (a 503 naming the setting when they are unusable). */
export function modelPools(env: Env, model: ModelEntry) {
  return poolsFor(readAccounts(env), model, readConfig(env).guardShardSlots);
}

/** Admission: throws a GatewayError (401/403/429/503/408) or returns the slot the call must settle. */
export async function admit(req: AdmitRequest): Promise<Slot> {
  const cfg = readConfig(req.env);
  let slot: Slot;
  try {
    slot = await acquireSlot(req.env, {
      cred: req.cred,
      model: req.model,
      pools: modelPools(req.env, req.model),
      circuit: circuitOf(cfg),
      queueTimeoutMs: req.queueTimeoutMs,
      origin: req.origin,
      signal: req.signal,
      ...(req.worstCase ? { reserve: reservation(req.model, req.worstCase) } : {}),
    });
  } catch (err) {
    // The key's object refused the credential: one answer whatever the reason (auth/refusal.ts), and a
    // CredentialRefused, which the failed-authentication limit counts.
    if (err instanceof GatewayError && err.status === 401) throw refusal(req.cred, err);
    throw err;
  }
  if (req.signal?.aborted) {
    // The caller left while it waited in line: it is not admitted, and nothing is recorded for it.
    await slot.release();
    throw new GatewayError(408, Codes.network, "client closed the request");
  }
  return slot;
}

export interface UpstreamRequest {
  env: Env;
  ctx: WaitUntil;
  model: ModelEntry;
  /** The body GLM receives, byte for byte. */
  body: string;
  messages: unknown;
  stream: boolean;
  requestId: string;
  kind: UsageRecord["kind"];
  acceptLanguage: string | null;
  /** The caller's signal: when it aborts, the upstream call stops. */
  signal: AbortSignal | null;
  startedAt: number;
  /**
   * Models to fall back to, in order, when `model` fails for good before the first byte (x-fallback-models).
   * Undefined: the key's own default list.
   */
  fallbacks?: ModelEntry[];
  /** No attempt starts after this (ms since the epoch); default: startedAt + UPSTREAM_DEADLINE_MS. */
  deadline?: number;
}

/** How one upstream call ended. */
export interface Outcome {
  /** GLM's status (or the gateway's, when GLM never answered). */
  status: number;
  ended: Ending;
  /** The usage record written for the call (tokens, cost, estimated or not). */
  record: UsageRecord;
  /** Milliseconds from the request's start to GLM's first byte, when it came. */
  ttfbMs?: number;
  /** GLM's error code, for an error answer. */
  upstreamCode?: string;
  finishReason?: string;
  events?: number;
  bytes?: number;
  /** Upstream attempts the request took (this one included), and the account this one went to. */
  attempts: number;
  account: string;
}

/** A streamed answer: its body, and the outcome once the stream has ended (and been settled). */
export interface Streamed {
  kind: "stream";
  contentType: string;
  body: ReadableStream<Uint8Array>;
  outcome: Promise<Outcome>;
}

/** A whole answer: GLM's JSON (or GLM's error, or the gateway's GLM-shaped error), already settled. */
export interface Answered {
  kind: "answer";
  /** The status to answer the client with (GLM's 1302/1305 are 429s). */
  status: number;
  contentType: string;
  body: string;
  outcome: Outcome;
}

/** What was sent, with the model that answered (a fallback's, perhaps) and the attempts it took. */
export type Sent = (Streamed | Answered) & { model: ModelEntry; attempts: number };

const JSON_TYPE = "application/json; charset=UTF-8";
const SSE_TYPE = "text/event-stream;charset=UTF-8";

function endingOf(status: number): Ending {
  return status === 504 ? "timeout" : status === 408 ? "client_abort" : status === 503 ? "slot_lost" : "upstream_break";
}

/** Usage from a whole JSON answer, without parsing an answer that has none. */
function usageOfJson(text: string): GlmUsage | undefined {
  if (!text.includes('"usage"')) return undefined;
  try {
    return (JSON.parse(text) as { usage?: GlmUsage }).usage;
  } catch {
    return undefined;
  }
}

/** Where a JSON string literal starting at `i` (its opening quote) ends: the index after its closing quote. */
function stringEnd(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    if (text[j] === "\\") j++;
    else if (text[j] === '"') return j + 1;
  }
  return text.length;
}

/**
 * The body with its top-level "model" value replaced, the rest byte for byte (a fallback model's attempt).
 * A body without one (never, after validation) is returned as it was.
 */
export function withModel(body: string, model: string): string {
  let depth = 0;
  for (let i = 0; i < body.length;) {
    const ch = body[i]!;
    if (ch === '"') {
      const end = stringEnd(body, i);
      let j = end;
      while (/\s/.test(body[j] ?? "")) j++;
      if (depth === 1 && body[j] === ":" && JSON.parse(body.slice(i, end)) === "model") {
        j++;
        while (/\s/.test(body[j] ?? "")) j++;
        if (body[j] === '"') return body.slice(0, j) + JSON.stringify(model) + body.slice(stringEnd(body, j));
      }
      i = end;
      continue;
    }
    if (ch === "{" || ch === "[") depth++;
    else if (ch === "}" || ch === "]") depth--;
    i++;
  }
  return body;
}

/** A failure before GLM's first byte that another attempt may fix, not yet settled. */
interface Retryable {
  kind: "retry";
  /**
   * Settles the attempt as the request's last and returns its answer. `moved`: next() has already recorded
   * it and told its account's circuit (the release then only frees the slot).
   */
  settle(moved: boolean): Promise<Answered>;
  /** The attempt's record as one that another attempt follows (not billed unless GLM answered). */
  superseded(): UsageRecord;
  verdict: Verdict;
  /** GLM's Retry-After, when it sent one. */
  retryAfterMs?: number;
}

/** One attempt on the slot as it stands (model, account). */
interface Attempt {
  model: ModelEntry;
  account: Account;
  body: string;
  number: number;
  /** Whether a retryable failure should come back unsettled (false: settle it as the last attempt). */
  retry: boolean;
  headerTimeoutMs: number;
}

const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 5_000;

/** Exponential backoff with equal jitter: half the step fixed, half random, so retries do not march together. */
export function backoffMs(retry: number, retryAfterMs = 0): number {
  const step = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (retry - 1));
  return Math.max(retryAfterMs, step / 2 + Math.random() * (step / 2));
}

function retryAfterOf(res: Response): number | undefined {
  const raw = res.headers.get("retry-after");
  if (raw === null) return undefined;
  const s = Number(raw);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const at = Date.parse(raw);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

/**
 * Which answers before the first byte another attempt may fix: no answer at all (unreachable, header timeout),
 * 5xx, GLM's 1305 (overloaded) and 1302 (account busy), and any 429. Other 4xx are the request's own fault.
 */
function retryableStatus(status: number, code: string): boolean {
  return status >= 500 || status === 429 || code === "1305" || code === "1302";
}

/**
 * How an answer counts for the account's circuit: a 5xx is the account failing, though it answered (the
 * block does not let it open the circuit of the model's last usable account). GLM's 1305 (the platform is
 * overloaded right now) and 1302/429 (the account is busy) say nothing about the account being broken — they
 * are retried, but they do not open its circuit, which would turn a busy hour into refusals.
 */
function verdictOf(status: number): Verdict {
  if (status >= 500) return "error";
  if (status === 429) return "neutral";
  return "ok";
}

const sleep = (ms: number, signal: AbortSignal | null) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

/**
 * The fallback models: the request's list, else the key's own, without the model itself or one the caller may not use.
 */
async function fallbacksFor(slot: Slot, req: UpstreamRequest): Promise<ModelEntry[]> {
  let list = req.fallbacks;
  if (list === undefined) {
    const ids = slot.caller.fallback_models ?? [];
    if (ids.length === 0) return [];
    const view = await getCatalog(req.env, req.ctx);
    // A default list may name a model since disabled or removed: it is skipped, not an error.
    list = ids.flatMap((id) => {
      try {
        return [resolveModel(view, id)];
      } catch {
        return [];
      }
    });
  }
  const allowed = slot.caller.token?.models;
  const seen = new Set([req.model.id]);
  return list.filter((m) => !seen.has(m.id) && (seen.add(m.id), !allowed || allowed.includes(m.id)));
}

/**
 * Sends the request on an admitted slot and settles it. Never throws: every failure — GLM unreachable, a
 * timeout, an error answer, a broken body — comes back as an answer with a GLM-style body and its outcome.
 *
 * A failure before GLM's first byte that another attempt may fix (retryableStatus) is tried again, up to
 * UPSTREAM_MAX_ATTEMPTS attempts per model and only while the deadline allows: at once on another account
 * with a free slot, else on any account (the same one, likely) after a backoff that honours Retry-After.
 * When the model has failed for good that way, each fallback model gets the same treatment, with its own
 * catalog entry, limits and price, and the body's "model" rewritten. Every attempt takes its own upstream slot
 * (Slot.next: one call to the key's object that also records the attempt before) and is recorded; once a
 * byte has come, nothing is retried.
 */
export async function send(slot: Slot, req: UpstreamRequest): Promise<Sent> {
  const cfg = readConfig(req.env);
  const accounts = new Map(readAccounts(req.env).map((a) => [a.id, a]));
  const deadline = req.deadline ?? req.startedAt + cfg.deadlineMs;
  let models: ModelEntry[] = [req.model];
  let fallbacksLoaded = false;
  let attempts = 0;
  for (let m = 0; ; m++) {
    const model = models[m]!;
    for (let n = 1; ; n++) {
      attempts++;
      const lastOfModel = n >= cfg.maxAttempts || Date.now() >= deadline;
      if (lastOfModel && !fallbacksLoaded) {
        fallbacksLoaded = true;
        models = [...models, ...(await fallbacksFor(slot, req).catch(() => []))];
      }
      const attempt: Attempt = {
        model,
        account: accounts.get(slot.account) ?? [...accounts.values()][0]!,
        body: model.id === req.model.id ? req.body : withModel(req.body, model.id),
        number: attempts,
        retry: !lastOfModel || m + 1 < models.length,
        headerTimeoutMs: Math.max(1_000, Math.min(cfg.upstreamTimeoutMs, deadline - Date.now())),
      };
      const got = await callOnce(slot, req, attempt, cfg);
      if (got.kind !== "retry") return { ...got, model, attempts };
      // The next attempt: this model on another account now, else on any after a backoff; or the next model.
      const nextModel = Date.now() >= deadline || req.signal?.aborted ? undefined : lastOfModel ? models[m + 1] : model;
      if (!nextModel) return { ...(await got.settle(false)), model, attempts };
      // The attempt's record and verdict travel with the first next() call.
      let end: [UsageRecord | undefined, Verdict] = [got.superseded(), got.verdict];
      let moved = false;
      try {
        if (nextModel !== model || accounts.size > 1) {
          // A fallback model may use any account; the same model another one than the account that failed.
          const avoid = nextModel === model ? [slot.account] : [];
          moved = await slot.next(...end, { model: nextModel, pools: modelPools(req.env, nextModel), avoid });
          end = [undefined, "neutral"];
        }
        if (!moved && nextModel === model) {
          const wait = backoffMs(n, got.retryAfterMs);
          if (Date.now() + wait < deadline) {
            await sleep(wait, req.signal);
            if (!req.signal?.aborted) {
              moved = await slot.next(...end, { model, pools: modelPools(req.env, model), avoid: [] });
              end = [undefined, "neutral"];
            }
          }
        }
      } catch (err) {
        // The next attempt was refused outright (a fallback's own limits, the limiter down): the slot is
        // released, and this attempt's answer is the request's.
        log({ level: "warn", msg: "no further upstream attempt", request_id: req.requestId, error: String(err) });
        return { ...(await got.settle(true)), model, attempts };
      }
      // No account has room (or the caller left during the backoff, or the deadline came): this attempt's
      // answer stands.
      if (!moved) return { ...(await got.settle(end[0] === undefined)), model, attempts };
      if (nextModel !== model) break;
    }
  }
}

/**
 * One attempt. Returns what is sent (settled, or settling as the stream ends), or — for a retryable failure
 * before the first byte when `attempt.retry` — the failure unsettled, for send() to retry.
 */
async function callOnce(
  slot: Slot,
  req: UpstreamRequest,
  attempt: Attempt,
  cfg: GatewayConfig,
): Promise<Streamed | Answered | Retryable> {
  const call: CallFacts = {
    id: crypto.randomUUID(),
    requestId: req.requestId,
    startedAt: req.startedAt,
    model: attempt.model,
    kind: req.kind,
    stream: req.stream,
    messages: req.messages,
    bodyBytes: attempt.body.length,
    account: attempt.account.id,
    attempt: attempt.number,
  };
  const common = { attempts: attempt.number, account: attempt.account.id };
  let settled: Promise<Outcome> | undefined;
  const finish = (
    end: EndFacts,
    verdict: Verdict,
    more: Omit<Outcome, "status" | "ended" | "record" | "attempts" | "account"> = {},
  ): Promise<Outcome> => {
    settled ??= (async () => {
      const record = usageRecord(call, end);
      await settle(slot, record, verdict);
      return { status: end.status, ended: end.ended, record, ...common, ...more };
    })();
    return settled;
  };
  /** A retryable failure: handed back unsettled, or settled as the last attempt. */
  const retryable = async (
    end: EndFacts,
    verdict: Verdict,
    answer: (o: Outcome) => Answered,
    more: Omit<Outcome, "status" | "ended" | "record" | "attempts" | "account">,
    retryAfterMs?: number,
  ): Promise<Answered | Retryable> => {
    if (!attempt.retry) return answer(await finish(end, verdict, more));
    return {
      kind: "retry",
      verdict,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      superseded: () => usageRecord(call, { ...end, superseded: true }),
      // After next() recorded the attempt and found no room, the record (same id) is a no-op in the ledger.
      settle: async (moved) => answer(await finish(end, moved ? "neutral" : verdict, more)),
    };
  };
  const errorAnswer =
    (err: GatewayError) =>
    (o: Outcome): Answered => ({
      kind: "answer",
      status: err.status,
      contentType: JSON_TYPE,
      body: JSON.stringify(errorBody(err.code, err.message)),
      outcome: o,
    });
  const failed = async (err: GatewayError, ended: Ending, ttfbMs?: number): Promise<Answered> => {
    const outcome = await finish(
      { status: err.status, ended },
      "neutral",
      ttfbMs !== undefined ? { ttfbMs, upstreamCode: err.code } : { upstreamCode: err.code },
    );
    return errorAnswer(err)(outcome);
  };

  // Until GLM's answer flows the gateway cannot see progress: the leases are renewed on a timer, and a
  // lease that is lost for good stops the call.
  let abortCall: ((why: "gateway") => void) | undefined;
  const stopKeepAlive = slot.keepAlive(req.ctx, LEASE_RENEW_MS, () => abortCall?.("gateway"));
  let up: UpstreamResponse;
  try {
    up = await callUpstream({
      baseUrl: attempt.account.baseUrl,
      apiKey: attempt.account.key,
      path: "/chat/completions",
      body: attempt.body,
      stream: req.stream,
      timeoutMs: attempt.headerTimeoutMs,
      acceptLanguage: req.acceptLanguage,
      clientSignal: req.signal,
      onStart: (abort) => (abortCall = abort),
    });
  } catch (err) {
    stopKeepAlive();
    const e =
      err instanceof GatewayError ? err : new GatewayError(502, Codes.network, `upstream unreachable: ${String(err)}`);
    // Unreachable (502) or no headers in time (504): the account's fault, and another attempt may do better.
    if (e.status === 502 || e.status === 504)
      return retryable({ status: e.status, ended: endingOf(e.status) }, "fail", errorAnswer(e), {
        upstreamCode: e.code,
      });
    return failed(e, endingOf(e.status));
  }
  const res = up.response;
  const ttfbMs = Date.now() - req.startedAt;

  if (!res.ok) {
    const { text, code } = await upstreamErrorBody(res);
    stopKeepAlive();
    const answer = (outcome: Outcome): Answered => ({
      kind: "answer",
      status: clientStatus(code, res.status),
      contentType: JSON_TYPE,
      body: text,
      outcome,
    });
    const end: EndFacts = { status: res.status, ended: "upstream_error" };
    const verdict = verdictOf(res.status);
    if (retryableStatus(res.status, code) && !req.signal?.aborted) {
      return retryable(end, verdict, answer, { ttfbMs, upstreamCode: code }, retryAfterOf(res));
    }
    return answer(await finish(end, verdict, { ttfbMs, upstreamCode: code }));
  }
  const contentType = res.headers.get("content-type") ?? (req.stream ? SSE_TYPE : JSON_TYPE);

  if (!req.stream) {
    // A long plain answer: the whole body must arrive within the timeout, leases renewed meanwhile.
    const timer = setTimeout(() => up.abort("timeout"), cfg.upstreamTimeoutMs);
    let text: string;
    try {
      text = await res.text();
    } catch {
      const why = up.abortReason();
      const e =
        why === "timeout"
          ? new GatewayError(504, Codes.network, `upstream did not finish within ${cfg.upstreamTimeoutMs} ms`)
          : why === "client"
            ? new GatewayError(408, Codes.network, "client closed the request")
            : why === "gateway"
              ? new GatewayError(
                  503,
                  Codes.unavailable,
                  "the request lost its concurrency slot and could not retake it; retry",
                )
              : new GatewayError(502, Codes.network, "upstream connection broke before the answer was complete");
      return failed(e, endingOf(e.status), ttfbMs);
    } finally {
      clearTimeout(timer);
      stopKeepAlive();
    }
    const outcome = await finish({ status: res.status, ended: "completed", usage: usageOfJson(text) }, "ok", {
      ttfbMs,
    });
    return { kind: "answer", status: res.status, contentType, body: text, outcome };
  }

  // From here the relay renews the leases, and ends the stream if they are lost. GLM has answered: the
  // account works, whatever happens to the stream later.
  stopKeepAlive();
  let resolveOutcome!: (o: Outcome) => void;
  const outcome = new Promise<Outcome>((r) => (resolveOutcome = r));
  req.ctx.waitUntil(outcome);
  const body = relaySse(up, {
    idleTimeoutMs: cfg.upstreamTimeoutMs,
    stallMs: LEASE_TTL_MS,
    renewEveryMs: LEASE_RENEW_MS,
    renew: () => slot.renew(),
    clientSignal: req.signal,
    onEnd: (o: RelayOutcome) => {
      void finish({ status: 200, ended: o.ended, usage: o.usage, events: o.events, done: o.done }, "ok", {
        ...(o.firstByteAt !== undefined ? { ttfbMs: o.firstByteAt - req.startedAt } : {}),
        ...(o.finishReason !== undefined ? { finishReason: o.finishReason } : {}),
        ...(o.error ? { upstreamCode: o.error.code } : {}),
        events: o.events,
        bytes: o.bytes,
      }).then(resolveOutcome);
    },
  });
  return { kind: "stream", contentType, body, outcome };
}

/** The fields an outcome adds to the request's log line. */
export function outcomeFields(o: Outcome): Record<string, unknown> {
  const r = o.record;
  return {
    model: r.model,
    stream: r.stream,
    upstream_status: o.status,
    ended: o.ended,
    prompt_tokens: r.prompt_tokens,
    completion_tokens: r.completion_tokens,
    cost_nano: r.cost_nano,
    estimated: r.estimated,
    ttfb_ms: o.ttfbMs,
    finish_reason: o.finishReason,
    upstream_code: o.upstreamCode,
    events: o.events,
    bytes: o.bytes,
    account: o.account,
    attempts: o.attempts,
  };
}
