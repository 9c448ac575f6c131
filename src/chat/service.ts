// Chat completions: take a slot, call GLM, and pass its answer through unchanged — streamed byte for byte
// or as the same JSON — while learning usage for the record. Every path that ends the request releases
// the slot exactly once and records what the request used (estimated, and flagged, where GLM did not say).
import { readConfig, requireSecret } from "../config.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import type { Credential } from "../auth/credentials.ts";
import { Codes, GatewayError } from "../errors.ts";
import { acquireSlot } from "../limiter/slots.ts";
import { LEASE_RENEW_MS } from "../limiter/leases.ts";
import { callUpstream, upstreamErrorBody } from "../upstream/client.ts";
import { relaySse, type RelayOutcome } from "../upstream/relay.ts";
import type { GlmUsage } from "../upstream/sse-observer.ts";
import { costNano, formatCny } from "../usage/cost.ts";
import { estimatePromptTokens } from "../usage/estimate.ts";
import type { Ending, UsageRecord } from "../usage/ledger.ts";
import type { LogFields } from "../http/log.ts";
import { log } from "../http/log.ts";
import type { WaitUntil } from "../http/context.ts";

export interface ChatCall {
  env: Env;
  ctx: WaitUntil;
  cred: Credential;
  model: ModelEntry;
  /** The request body as received (request_id already set), forwarded byte for byte. */
  body: string;
  messages: unknown;
  stream: boolean;
  requestId: string;
  queueTimeoutMs: number;
  origin: string | null;
  acceptLanguage: string | null;
  clientSignal: AbortSignal | null;
  logLine: LogFields;
  startedAt: number;
  kind?: UsageRecord["kind"];
}

/** Adds request_id to a JSON object text without re-serialising the rest of it. */
export function withRequestId(body: string, requestId: string): string {
  const i = body.indexOf("{");
  const rest = body.slice(i + 1).trimStart();
  const sep = rest.startsWith("}") ? "" : ",";
  return `${body.slice(0, i)}{"request_id":${JSON.stringify(requestId)}${sep}${body.slice(i + 1)}`;
}

function tokensFrom(u: GlmUsage | undefined) {
  if (!u || typeof u.prompt_tokens !== "number" || typeof u.completion_tokens !== "number") return undefined;
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: u.completion_tokens,
    cached_tokens: u.prompt_tokens_details?.cached_tokens ?? 0,
  };
}

export async function runChat(call: ChatCall): Promise<Response> {
  const cfg = readConfig(call.env);
  const apiKey = requireSecret(call.env, "GLM_API_KEY");
  const slot = await acquireSlot(call.env, {
    cred: call.cred,
    model: call.model,
    accountTier: cfg.accountTier,
    queueTimeoutMs: call.queueTimeoutMs,
    origin: call.origin,
  });
  // The price is fixed when the request starts: a catalog change does not touch requests in flight.
  const pricing = call.model.pricing;
  const leaseKey = crypto.randomUUID();
  const headers = new Headers({
    "x-request-id": call.requestId,
    "x-concurrency-limit": String(slot.limit),
    "x-concurrency-in-flight": String(slot.inFlight),
  });
  const record = (status: number, ended: Ending, usage: ReturnType<typeof tokensFrom>, completionGuess = 0): UsageRecord => {
    const estimated = usage === undefined;
    const tokens = usage ?? {
      prompt_tokens: ended === "upstream_error" && status >= 400 ? 0 : estimatePromptTokens(call.messages),
      completion_tokens: completionGuess,
      cached_tokens: 0,
    };
    return {
      id: leaseKey, request_id: call.requestId, ts: call.startedAt, model: call.model.id, kind: call.kind ?? "chat",
      stream: call.stream, status, ended, ...tokens, cost_nano: costNano(pricing, tokens),
      estimated: estimated && !(ended === "upstream_error" && status >= 400),
    };
  };
  const finish = (rec: UsageRecord, extra: LogFields = {}) => {
    log({
      ...call.logLine, key_id: slot.caller.id, model: call.model.id, stream: call.stream, status: rec.status, ended: rec.ended,
      prompt_tokens: rec.prompt_tokens, completion_tokens: rec.completion_tokens, estimated: rec.estimated,
      total_ms: Date.now() - call.startedAt, ...extra,
    });
    return slot.release(rec);
  };

  let up;
  // Until the answer starts flowing the gateway cannot see progress, so the leases are renewed on a timer.
  const stopKeepAlive = slot.keepAlive(call.ctx);
  try {
    up = await callUpstream({
      baseUrl: cfg.baseUrl, apiKey, path: "/chat/completions", body: call.body, stream: call.stream,
      timeoutMs: cfg.upstreamTimeoutMs, acceptLanguage: call.acceptLanguage, clientSignal: call.clientSignal,
    });
  } catch (err) {
    stopKeepAlive();
    const status = err instanceof GatewayError ? err.status : 502;
    const ended: Ending = status === 504 ? "timeout" : status === 408 ? "client_abort" : "upstream_break";
    // A timed-out or abandoned request may have been processed upstream: estimate it rather than record zero.
    // The thrown error is logged by the request middleware, so only the release happens here.
    const rec = record(status, ended, undefined);
    Object.assign(call.logLine, { key_id: slot.caller.id, model: call.model.id, ended, estimated: true });
    call.ctx.waitUntil(slot.release(rec));
    throw err;
  }
  const res = up.response;
  const ttfbMs = Date.now() - call.startedAt;

  if (!res.ok) {
    const { text, code } = await upstreamErrorBody(res).finally(stopKeepAlive);
    call.ctx.waitUntil(finish(record(res.status, "upstream_error", undefined), { upstream_code: code, ttfb_ms: ttfbMs }));
    // GLM's own concurrency and overload answers become 429 with GLM's code, as the caller expects.
    const status = code === Codes.concurrency || code === Codes.overloaded ? 429 : res.status;
    headers.set("content-type", "application/json; charset=UTF-8");
    if (status === 429) headers.set("retry-after", "1");
    return new Response(text, { status, headers });
  }

  headers.set("content-type", res.headers.get("content-type") ?? (call.stream ? "text/event-stream;charset=UTF-8" : "application/json; charset=UTF-8"));

  if (!call.stream) {
    return nonStream(call, up, res, headers, record, finish, (r) => slot.release(r), ttfbMs, cfg.upstreamTimeoutMs).finally(stopKeepAlive);
  }
  // From here the relay renews the leases itself, and only while the client keeps reading.
  stopKeepAlive();

  headers.set("cache-control", "no-cache");
  // Registered before returning: the release runs when the stream ends, however it ends.
  let done!: () => void;
  call.ctx.waitUntil(new Promise<void>((r) => (done = r)));
  const body = relaySse(up, {
    idleTimeoutMs: cfg.upstreamTimeoutMs,
    renewEveryMs: LEASE_RENEW_MS,
    clientSignal: call.clientSignal,
    renew: () => call.ctx.waitUntil(slot.renew()),
    onEnd: (o: RelayOutcome) => {
      const usage = tokensFrom(o.usage);
      // Without usage, each streamed event is about one token (GLM sends roughly a token per chunk).
      const guess = Math.max(0, o.events - (o.done ? 1 : 0));
      finish(record(200, o.ended, usage, guess), {
        ttfb_ms: o.firstByteAt !== undefined ? o.firstByteAt - call.startedAt : undefined,
        finish_reason: o.finishReason, events: o.events, bytes: o.bytes,
      })
        .finally(done)
        .catch(() => undefined);
    },
  });
  return new Response(body, { status: 200, headers });
}

async function nonStream(
  call: ChatCall,
  up: Awaited<ReturnType<typeof callUpstream>>,
  res: Response,
  headers: Headers,
  record: (status: number, ended: Ending, usage: ReturnType<typeof tokensFrom>) => UsageRecord,
  finish: (rec: UsageRecord, extra?: LogFields) => Promise<void>,
  release: (rec: UsageRecord) => Promise<void>,
  ttfbMs: number,
  timeoutMs: number,
): Promise<Response> {
  const timer = setTimeout(() => up.abort("timeout"), timeoutMs);
  let text: string;
  try {
    text = await res.text();
  } catch {
    const why = up.abortReason();
    const ended: Ending = why === "timeout" ? "timeout" : why === "client" ? "client_abort" : "upstream_break";
    Object.assign(call.logLine, { model: call.model.id, ended, ttfb_ms: ttfbMs });
    call.ctx.waitUntil(release(record(why === "timeout" ? 504 : 502, ended, undefined)));
    throw new GatewayError(why === "timeout" ? 504 : 502, Codes.network, why === "timeout" ? `upstream did not finish within ${timeoutMs} ms` : "upstream connection broke before the answer was complete");
  } finally {
    clearTimeout(timer);
  }
  let usage: ReturnType<typeof tokensFrom>;
  try {
    usage = tokensFrom((JSON.parse(text) as { usage?: GlmUsage }).usage);
  } catch {
    usage = undefined;
  }
  const rec = record(res.status, "completed", usage);
  headers.set("x-cost-cny", formatCny(rec.cost_nano));
  call.ctx.waitUntil(finish(rec, { ttfb_ms: ttfbMs }));
  return new Response(text, { status: res.status, headers });
}
