// The request pipeline: the life of every upstream call the gateway makes — chat (plain and streamed), each
// call of a summary, each async-job run — in four phases:
//   admit   the credential, the budget, the key's slot and the upstream slot (limiter/slots.ts);
//   call    GLM, with a header timeout, the leases kept alive while it thinks, cancelled if the caller goes;
//   relay   GLM's bytes passed on unchanged while usage and the ending are observed (relay.ts);
//   settle  one usage record and the release, exactly once, on every path (settle.ts).
// Callers get a typed Outcome; none of them reads another's HTTP response or headers to learn what happened.
import type { Credential } from "../auth/credentials.ts";
import { refusal } from "../auth/refusal.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import { readConfig, requireSecret } from "../config.ts";
import { Codes, errorBody, GatewayError } from "../errors.ts";
import type { WaitUntil } from "../http/context.ts";
import { LEASE_RENEW_MS, LEASE_TTL_MS } from "../limiter/leases.ts";
import { acquireSlot, type Slot } from "../limiter/slots.ts";
import { callUpstream, upstreamErrorBody, type UpstreamResponse } from "../upstream/client.ts";
import type { GlmUsage } from "../upstream/sse-observer.ts";
import { costNano } from "../usage/cost.ts";
import type { Ending, UsageRecord } from "../usage/ledger.ts";
import { clientStatus } from "./glm-codes.ts";
import { relaySse, type RelayOutcome } from "./relay.ts";
import { settle, usageRecord, type CallFacts, type EndFacts } from "./settle.ts";

export type { Slot } from "../limiter/slots.ts";

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

/** Admission: throws a GatewayError (401/403/429/503/408) or returns the slot the call must settle. */
export async function admit(req: AdmitRequest): Promise<Slot> {
  let slot: Slot;
  try {
    slot = await acquireSlot(req.env, {
      cred: req.cred,
      model: req.model,
      accountTier: readConfig(req.env).accountTier,
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

export type Sent = Streamed | Answered;

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

/**
 * Sends one call on an admitted slot and settles it. Never throws: every failure — GLM unreachable, a
 * timeout, an error answer, a broken body — comes back as an answer with a GLM-style body and its outcome.
 */
export async function send(slot: Slot, req: UpstreamRequest): Promise<Sent> {
  const cfg = readConfig(req.env);
  const call: CallFacts = {
    id: crypto.randomUUID(), requestId: req.requestId, startedAt: req.startedAt, model: req.model, kind: req.kind,
    stream: req.stream, messages: req.messages, bodyBytes: req.body.length,
  };
  let settled: Promise<Outcome> | undefined;
  const finish = (end: EndFacts, more: Omit<Outcome, "status" | "ended" | "record"> = {}): Promise<Outcome> => {
    settled ??= (async () => {
      const record = usageRecord(call, end);
      await settle(slot, record);
      return { status: end.status, ended: end.ended, record, ...more };
    })();
    return settled;
  };
  const failed = async (err: GatewayError, ended: Ending, ttfbMs?: number): Promise<Answered> => {
    const outcome = await finish({ status: err.status, ended }, ttfbMs !== undefined ? { ttfbMs, upstreamCode: err.code } : { upstreamCode: err.code });
    return { kind: "answer", status: err.status, contentType: JSON_TYPE, body: JSON.stringify(errorBody(err.code, err.message)), outcome };
  };

  // Until GLM's answer flows the gateway cannot see progress: the leases are renewed on a timer, and a
  // lease that is lost for good stops the call.
  let abortCall: ((why: "gateway") => void) | undefined;
  const stopKeepAlive = slot.keepAlive(req.ctx, LEASE_RENEW_MS, () => abortCall?.("gateway"));
  let up: UpstreamResponse;
  try {
    let apiKey: string;
    try {
      apiKey = requireSecret(req.env, "GLM_API_KEY");
    } catch (err) {
      stopKeepAlive();
      // Nothing was sent: the call is settled as refused, at no cost.
      return await failed(err as GatewayError, "upstream_error");
    }
    up = await callUpstream({
      baseUrl: cfg.baseUrl, apiKey, path: "/chat/completions", body: req.body, stream: req.stream,
      timeoutMs: cfg.upstreamTimeoutMs, acceptLanguage: req.acceptLanguage, clientSignal: req.signal,
      onStart: (abort) => (abortCall = abort),
    });
  } catch (err) {
    stopKeepAlive();
    const e = err instanceof GatewayError ? err : new GatewayError(502, Codes.network, `upstream unreachable: ${String(err)}`);
    return failed(e, endingOf(e.status));
  }
  const res = up.response;
  const ttfbMs = Date.now() - req.startedAt;

  if (!res.ok) {
    const { text, code } = await upstreamErrorBody(res);
    stopKeepAlive();
    const outcome = await finish({ status: res.status, ended: "upstream_error" }, { ttfbMs, upstreamCode: code });
    return { kind: "answer", status: clientStatus(code, res.status), contentType: JSON_TYPE, body: text, outcome };
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
              ? new GatewayError(503, Codes.unavailable, "the request lost its concurrency slot and could not retake it; retry")
              : new GatewayError(502, Codes.network, "upstream connection broke before the answer was complete");
      return failed(e, endingOf(e.status), ttfbMs);
    } finally {
      clearTimeout(timer);
      stopKeepAlive();
    }
    const outcome = await finish({ status: res.status, ended: "completed", usage: usageOfJson(text) }, { ttfbMs });
    return { kind: "answer", status: res.status, contentType, body: text, outcome };
  }

  // From here the relay renews the leases, and ends the stream if they are lost.
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
      void finish(
        { status: 200, ended: o.ended, usage: o.usage, events: o.events, done: o.done },
        {
          ...(o.firstByteAt !== undefined ? { ttfbMs: o.firstByteAt - req.startedAt } : {}),
          ...(o.finishReason !== undefined ? { finishReason: o.finishReason } : {}),
          ...(o.error ? { upstreamCode: o.error.code } : {}),
          events: o.events,
          bytes: o.bytes,
        },
      ).then(resolveOutcome);
    },
  });
  return { kind: "stream", contentType, body, outcome };
}

/** The fields an outcome adds to the request's log line. */
export function outcomeFields(o: Outcome): Record<string, unknown> {
  const r = o.record;
  return {
    model: r.model, stream: r.stream, upstream_status: o.status, ended: o.ended, prompt_tokens: r.prompt_tokens,
    completion_tokens: r.completion_tokens, cost_nano: r.cost_nano, estimated: r.estimated, ttfb_ms: o.ttfbMs,
    finish_reason: o.finishReason, upstream_code: o.upstreamCode, events: o.events, bytes: o.bytes,
  };
}
