// Every upstream call a summary makes goes through here. Each call holds a local gate permit (at most
// `parallel` calls at once: the caller's free slots, capped at the Workers limit of 6 connections) and a
// limiter slot (the caller's in-flight limit and the upstream guard), releases the slot exactly once with
// one UsageRecord (kind "summarize", unique id, the request's request_id), and is retried once on a
// transient failure (1305, 5xx, network, timeout). Failures come out as errors that name the step.
// Every call streams upstream (collect.ts says why); only the final one is relayed to the client.
import type { Credential } from "../auth/credentials.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import { readConfig, requireSecret, type GatewayConfig } from "../config.ts";
import { Codes, GatewayError } from "../errors.ts";
import type { WaitUntil } from "../http/context.ts";
import { acquireSlot, type Slot } from "../limiter/slots.ts";
import { callUpstream, upstreamErrorBody, type UpstreamResponse } from "../upstream/client.ts";
import type { RelayOutcome } from "../upstream/relay.ts";
import type { GlmUsage } from "../upstream/sse-observer.ts";
import { costNano } from "../usage/cost.ts";
import { estimatePromptTokens } from "../usage/estimate.ts";
import type { Ending, UsageRecord } from "../usage/ledger.ts";
import { collectSse, type Collected } from "./collect.ts";
import { checkFinish, classify, inBandStatus, Transient } from "./failures.ts";
import { Gate, sleep } from "./gate.ts";
import { MAX_PARALLEL } from "./planner.ts";
import { SUMMARY_TEMPERATURE, type ChatMessage } from "./prompts.ts";

/** Later calls wait this long for a slot (at least): a summary half done is worth a short wait. */
export const PIECE_QUEUE_MS = 30_000;
/** Pause before the one retry of a transient failure (GLM's 1305 means "overloaded, try again shortly"). */
export const RETRY_DELAY_MS = 500;

export interface CallSetup {
  env: Env;
  ctx: WaitUntil;
  cred: Credential;
  model: ModelEntry;
  requestId: string;
  origin: string | null;
  acceptLanguage: string | null;
  /** How long the first call waits for a slot (x-queue-timeout-ms); later calls wait at least PIECE_QUEUE_MS. */
  queueTimeoutMs: number;
  /** The client's signal: when it aborts, every call stops. */
  signal: AbortSignal | null;
}

export interface Answer {
  content: string;
  finishReason: string;
}

/** A final-step upstream stream, open and answering 200; `finish` records and releases, once. */
export interface OpenStream {
  up: UpstreamResponse;
  renew(): void;
  finish(outcome: RelayOutcome): void;
}

interface Attempt {
  id: string;
  started: number;
  messages: ChatMessage[];
}

function tokensOf(u: GlmUsage | undefined) {
  if (!u || typeof u.prompt_tokens !== "number" || typeof u.completion_tokens !== "number") return undefined;
  return { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, cached_tokens: u.prompt_tokens_details?.cached_tokens ?? 0 };
}

export class Calls {
  readonly records: UsageRecord[] = [];
  /** How many calls may run at once; set by admit(). */
  parallel = 1;
  limit = 0;
  inFlight = 0;
  private readonly cfg: GatewayConfig;
  private readonly apiKey: string;
  private readonly pricing: ModelEntry["pricing"];
  private readonly controller = new AbortController();
  private readonly gate = new Gate(1);
  private spare: Slot | undefined;
  private seq = 0;

  constructor(private readonly s: CallSetup) {
    this.cfg = readConfig(s.env);
    this.apiKey = requireSecret(s.env, "GLM_API_KEY");
    // The price is fixed when the request starts: a catalog change does not touch a summary in progress.
    this.pricing = s.model.pricing;
    const onClient = () => this.abort(new GatewayError(408, Codes.network, "client closed the request"));
    if (s.signal?.aborted) onClient();
    s.signal?.addEventListener("abort", onClient, { once: true });
  }

  get modelId(): string {
    return this.s.model.id;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Stops every call in progress and every wait; the first reason sticks. */
  abort(reason: unknown): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /**
   * Takes the first slot — admission, so a full limit is a 429 before any byte is sent — and sizes the
   * parallelism from it: the slots the caller has free now (this one included), at most MAX_PARALLEL.
   */
  async admit(): Promise<void> {
    const slot = await this.acquire(this.s.queueTimeoutMs);
    this.spare = slot;
    this.limit = slot.limit;
    this.inFlight = slot.inFlight;
    this.parallel = Math.max(1, Math.min(MAX_PARALLEL, slot.limit - slot.inFlight + 1));
    this.gate.size = this.parallel;
  }

  /** Releases the admission slot if no call used it (a summary that failed before its first call). */
  async close(): Promise<void> {
    const spare = this.spare;
    this.spare = undefined;
    await spare?.release();
  }

  totals(): { prompt_tokens: number; completion_tokens: number; cost_nano: number } {
    let prompt_tokens = 0, completion_tokens = 0, cost_nano = 0;
    for (const r of this.records) {
      prompt_tokens += r.prompt_tokens;
      completion_tokens += r.completion_tokens;
      cost_nano += r.cost_nano;
    }
    return { prompt_tokens, completion_tokens, cost_nano };
  }

  /** A call whose answer is collected here (map and merge steps, and the final step when the client does not stream). */
  async complete(messages: ChatMessage[], maxTokens: number, what: string): Promise<Answer> {
    return this.withRetry(what, () => this.once(messages, maxTokens, what));
  }

  /** The final step for a streaming client: retried like the others until it answers 200; then the relay owns it. */
  async openStream(messages: ChatMessage[], maxTokens: number, what: string): Promise<OpenStream> {
    return this.withRetry(what, () => this.openOnce(messages, maxTokens, what));
  }

  private async withRetry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof Transient) || this.signal.aborted) throw err instanceof Transient ? err.error : err;
    }
    await sleep(RETRY_DELAY_MS, this.signal);
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof Transient)) throw err;
      const e = err.error;
      throw new GatewayError(e.status, e.code, `${what} failed twice, so the summary was abandoned: ${e.message}`, e.headers);
    }
  }

  private async acquire(queueTimeoutMs: number): Promise<Slot> {
    return acquireSlot(this.s.env, {
      cred: this.s.cred,
      model: this.s.model,
      accountTier: this.cfg.accountTier,
      queueTimeoutMs,
      origin: this.s.origin,
    });
  }

  /** The admission slot for the first call; a fresh one (waiting a while if need be) for the others. */
  private async slotFor(what: string): Promise<Slot> {
    const spare = this.spare;
    if (spare) {
      this.spare = undefined;
      return spare;
    }
    const pending = this.acquire(Math.max(this.s.queueTimeoutMs, PIECE_QUEUE_MS));
    // The limiter cannot be interrupted; if the summary is abandoned meanwhile, free the slot when it comes.
    let onAbort = () => undefined as void;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(this.signal.reason);
      if (this.signal.aborted) onAbort();
      else this.signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([pending, aborted]);
    } catch (err) {
      if (this.signal.aborted) {
        this.s.ctx.waitUntil(pending.then((slot) => slot.release(), () => undefined));
        throw this.signal.reason;
      }
      if (err instanceof GatewayError) throw new GatewayError(err.status, err.code, `${what}: ${err.message}`, err.headers);
      throw err;
    } finally {
      this.signal.removeEventListener("abort", onAbort);
    }
  }

  private record(a: Attempt, status: number, ended: Ending, usage: ReturnType<typeof tokensOf>, events = 0): UsageRecord {
    // No usage from upstream: a refused call (4xx/5xx answer) used nothing; one that was cut off may have
    // been processed, so its prompt is estimated (and flagged), and each event counts as about one token.
    const refused = ended === "upstream_error" && status >= 400;
    const tokens = usage ?? {
      prompt_tokens: refused ? 0 : estimatePromptTokens(a.messages), completion_tokens: Math.max(0, events - 1), cached_tokens: 0,
    };
    const rec: UsageRecord = {
      id: a.id, request_id: this.s.requestId, ts: a.started, model: this.s.model.id, kind: "summarize",
      stream: true, status, ended, ...tokens, cost_nano: costNano(this.pricing, tokens), estimated: usage === undefined && !refused,
    };
    this.records.push(rec);
    return rec;
  }

  private body(messages: ChatMessage[], maxTokens: number): string {
    return JSON.stringify({
      model: this.s.model.id, messages, max_tokens: maxTokens, temperature: SUMMARY_TEMPERATURE, stream: true,
      // GLM wants request_id unique per call; the suffix keeps the caller's id visible upstream.
      request_id: `${this.s.requestId}-${++this.seq}`,
    });
  }

  /** Sends one call. On a non-200 answer it records, releases and throws the classified error. */
  private async send(slot: Slot, a: Attempt, maxTokens: number, what: string): Promise<UpstreamResponse> {
    if (this.signal.aborted) {
      // Abandoned while waiting for the slot: nothing was sent, so nothing is recorded.
      await slot.release();
      throw this.signal.reason;
    }
    let up: UpstreamResponse;
    try {
      up = await callUpstream({
        baseUrl: this.cfg.baseUrl, apiKey: this.apiKey, path: "/chat/completions", body: this.body(a.messages, maxTokens),
        stream: true, timeoutMs: this.cfg.upstreamTimeoutMs, acceptLanguage: this.s.acceptLanguage, clientSignal: this.signal,
      });
    } catch (err) {
      const e = err instanceof GatewayError ? err : new GatewayError(502, Codes.network, String(err));
      const ended: Ending = e.status === 504 ? "timeout" : e.status === 408 ? "client_abort" : "upstream_break";
      await slot.release(this.record(a, e.status, ended, undefined));
      if (this.signal.aborted) throw this.signal.reason;
      throw new Transient(new GatewayError(e.status, e.code, `${what}: ${e.message}`));
    }
    const res = up.response;
    if (res.ok) return up;
    const { text, code } = await upstreamErrorBody(res);
    await slot.release(this.record(a, res.status, "upstream_error", undefined));
    throw classify(res.status, code, text, what);
  }

  private async once(messages: ChatMessage[], maxTokens: number, what: string): Promise<Answer> {
    await this.gate.take(this.signal);
    try {
      const slot = await this.slotFor(what);
      const a: Attempt = { id: crypto.randomUUID(), started: Date.now(), messages };
      // Leases last 30 s: keep this one alive while the answer is still coming.
      const stopKeepAlive = slot.keepAlive(this.s.ctx);
      try {
        const up = await this.send(slot, a, maxTokens, what);
        return await this.read(slot, a, up, what);
      } finally {
        stopKeepAlive();
      }
    } finally {
      this.gate.give();
    }
  }

  /** Collects a streamed answer; records and releases the slot however it ends. */
  private async read(slot: Slot, a: Attempt, up: UpstreamResponse, what: string): Promise<Answer> {
    let got: Collected;
    try {
      got = await collectSse(up, this.cfg.upstreamTimeoutMs);
    } catch {
      const why = up.abortReason();
      const ended: Ending = why === "timeout" ? "timeout" : why === "client" ? "client_abort" : "upstream_break";
      await slot.release(this.record(a, 200, ended, undefined));
      if (this.signal.aborted) throw this.signal.reason;
      const status = why === "timeout" ? 504 : 502;
      throw new Transient(new GatewayError(status, Codes.network, `${what}: the upstream ${why === "timeout" ? `sent nothing for ${this.cfg.upstreamTimeoutMs} ms` : "connection broke mid-answer"}`));
    }
    const usage = tokensOf(got.usage);
    if (got.error) {
      await slot.release(this.record(a, 200, "upstream_error", usage));
      throw classify(inBandStatus(got.error.code), got.error.code, JSON.stringify({ error: got.error }), what);
    }
    if (!got.finishReason) {
      await slot.release(this.record(a, 200, "upstream_break", usage, got.events));
      throw new Transient(new GatewayError(502, Codes.network, `${what}: the upstream ended the answer before it finished`));
    }
    await slot.release(this.record(a, 200, "completed", usage, got.events));
    return checkFinish(got.finishReason, got.content, what);
  }

  private async openOnce(messages: ChatMessage[], maxTokens: number, what: string): Promise<OpenStream> {
    await this.gate.take(this.signal);
    let handedOver = false;
    try {
      const slot = await this.slotFor(what);
      const a: Attempt = { id: crypto.randomUUID(), started: Date.now(), messages };
      const up = await this.send(slot, a, maxTokens, what);
      let done = false;
      handedOver = true;
      return {
        up,
        renew: () => this.s.ctx.waitUntil(slot.renew()),
        finish: (o) => {
          if (done) return;
          done = true;
          const rec = this.record(a, 200, o.ended, tokensOf(o.usage), o.events);
          this.s.ctx.waitUntil(slot.release(rec).finally(() => this.gate.give()));
        },
      };
    } finally {
      if (!handedOver) this.gate.give();
    }
  }
}
