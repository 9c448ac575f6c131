// Every upstream call a summary makes goes through the request pipeline (src/pipeline/): admission, the
// call, the relay and the settlement (one UsageRecord of kind "summarize" per call, the release) happen
// there. This file adds what a summary needs on top: a local gate (at most `parallel` calls at once: the
// caller's free slots, capped at the Workers limit of 6 connections), the first slot taken up front (so a
// full limit is a 429 before any byte is sent), one retry of a failure after GLM's answer had started (an
// in-band error, a broken or cut-off stream, an empty answer), and errors that name the step. A failure before
// GLM's first byte is not retried here: the pipeline has already retried it (other accounts, backoff,
// UPSTREAM_MAX_ATTEMPTS), so the two layers never multiply. Every call streams upstream (collect.ts says why); only the
// final one is relayed to the client.
import type { Credential } from "../auth/credentials.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import { Codes, GatewayError } from "../errors.ts";
import type { WaitUntil } from "../shared/wait-until.ts";
import { admit, send, type Outcome, type Slot } from "../pipeline/index.ts";
import { estimatePromptTokens } from "../usage/estimate.ts";
import type { UsageRecord } from "../usage/ledger.ts";
import { collectSse } from "./collect.ts";
import { checkFinish, classify, Transient } from "./failures.ts";
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

/** A final-step stream, open and answering 200: its relayed body, and its outcome once it has ended. */
export interface OpenStream {
  body: ReadableStream<Uint8Array>;
  outcome: Promise<Outcome>;
}

export class Calls {
  readonly records: UsageRecord[] = [];
  /** How many calls may run at once; set by admit(). */
  parallel = 1;
  limit = 0;
  inFlight = 0;
  private readonly controller = new AbortController();
  private readonly gate = new Gate(1);
  private spare: Slot | undefined;
  private seq = 0;

  constructor(private readonly s: CallSetup) {
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
  async admit(first: { promptTokens: number; maxOutputTokens: number }): Promise<void> {
    // Held against a budget: the first call's largest possible prompt and output (whichever step it is).
    const slot = await this.acquire(this.s.queueTimeoutMs, first);
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
    let prompt_tokens = 0,
      completion_tokens = 0,
      cost_nano = 0;
    for (const r of this.records) {
      prompt_tokens += r.prompt_tokens;
      completion_tokens += r.completion_tokens;
      cost_nano += r.cost_nano;
    }
    return { prompt_tokens, completion_tokens, cost_nano };
  }

  /**
   * A call whose answer is collected here (map and merge steps, and the final step when the client does not stream).
   */
  async complete(messages: ChatMessage[], maxTokens: number, what: string): Promise<Answer> {
    return this.withRetry(what, () => this.once(messages, maxTokens, what));
  }

  /** The final step for a streaming client: retried like the others until it answers 200; then the sink reads it. */
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
      throw new GatewayError(
        e.status,
        e.code,
        `${what} failed twice, so the summary was abandoned: ${e.message}`,
        e.headers,
      );
    }
  }

  private acquire(
    queueTimeoutMs: number,
    worstCase?: { promptTokens: number; maxOutputTokens: number },
  ): Promise<Slot> {
    return admit({
      env: this.s.env,
      cred: this.s.cred,
      model: this.s.model,
      queueTimeoutMs,
      origin: this.s.origin,
      signal: this.signal,
      ...(worstCase ? { worstCase } : {}),
    });
  }

  /** The admission slot for the first call; a fresh one (waiting a while if need be) for the others. */
  private async slotFor(what: string, messages: ChatMessage[], maxTokens: number): Promise<Slot> {
    const spare = this.spare;
    if (spare) {
      this.spare = undefined;
      return spare;
    }
    try {
      return await this.acquire(Math.max(this.s.queueTimeoutMs, PIECE_QUEUE_MS), {
        promptTokens: estimatePromptTokens(messages),
        maxOutputTokens: maxTokens,
      });
    } catch (err) {
      if (this.signal.aborted) throw this.signal.reason;
      if (err instanceof GatewayError)
        throw new GatewayError(err.status, err.code, `${what}: ${err.message}`, err.headers);
      throw err;
    }
  }

  private body(messages: ChatMessage[], maxTokens: number): string {
    return JSON.stringify({
      model: this.s.model.id,
      messages,
      max_tokens: maxTokens,
      temperature: SUMMARY_TEMPERATURE,
      stream: true,
      // GLM wants request_id unique per call; the suffix keeps the caller's id visible upstream.
      request_id: `${this.s.requestId}-${++this.seq}`,
    });
  }

  /** Sends one call through the pipeline: its open stream, or the classified error of a refused call. */
  private async open(messages: ChatMessage[], maxTokens: number, what: string): Promise<OpenStream> {
    const slot = await this.slotFor(what, messages, maxTokens);
    if (this.signal.aborted) {
      // Abandoned while waiting for the slot: nothing was sent, so nothing is recorded.
      await slot.release();
      throw this.signal.reason;
    }
    const sent = await send(slot, {
      env: this.s.env,
      ctx: this.s.ctx,
      model: this.s.model,
      body: this.body(messages, maxTokens),
      messages,
      stream: true,
      requestId: this.s.requestId,
      kind: "summarize",
      acceptLanguage: this.s.acceptLanguage,
      signal: this.signal,
      startedAt: Date.now(),
    });
    if (sent.kind === "stream") {
      return { body: sent.body, outcome: sent.outcome.then((o) => (this.records.push(o.record), o)) };
    }
    this.records.push(sent.outcome.record);
    if (this.signal.aborted) throw this.signal.reason;
    const err = classify(sent.status, sent.outcome.upstreamCode ?? String(sent.status), sent.body, what);
    if (!(err instanceof Transient)) throw err;
    const e = err.error;
    const tries = sent.attempts === 1 ? "1 attempt" : `${sent.attempts} attempts`;
    throw new GatewayError(
      e.status,
      e.code,
      `${what} failed after ${tries}, so the summary was abandoned: ${e.message}`,
      e.headers,
    );
  }

  private async once(messages: ChatMessage[], maxTokens: number, what: string): Promise<Answer> {
    await this.gate.take(this.signal);
    try {
      const open = await this.open(messages, maxTokens, what);
      const got = await collectSse(open.body);
      const o = await open.outcome;
      switch (o.ended) {
        case "completed":
          return checkFinish(got.finishReason ?? "", got.content, what);
        case "upstream_error": {
          const code = got.error?.code ?? o.upstreamCode ?? Codes.network;
          throw classify(
            undefined,
            code,
            JSON.stringify({ error: got.error ?? { code, message: "upstream error" } }),
            what,
          );
        }
        case "client_abort":
          throw this.signal.aborted
            ? this.signal.reason
            : new GatewayError(408, Codes.network, "client closed the request");
        default: {
          // Timeout, a broken or unfinished stream, a lost slot: worth one more try.
          const status = o.ended === "timeout" ? 504 : 502;
          throw new Transient(
            new GatewayError(
              status,
              Codes.network,
              `${what}: ${got.error?.message ?? `the upstream call ended (${o.ended})`}`,
            ),
          );
        }
      }
    } finally {
      this.gate.give();
    }
  }

  private async openOnce(messages: ChatMessage[], maxTokens: number, what: string): Promise<OpenStream> {
    await this.gate.take(this.signal);
    try {
      const open = await this.open(messages, maxTokens, what);
      // The permit is held until the stream has ended, like any other call's.
      void open.outcome.finally(() => this.gate.give());
      return open;
    } catch (err) {
      this.gate.give();
      throw err;
    }
  }
}
