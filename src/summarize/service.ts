// The summarize service: checks the input against the catalog, admits the request (its first slot, so a
// full limit is a plain 429), runs the orchestrator, and shapes the answer — a SummarizeResult, or a
// streamed Response. Also the entry point for work the gateway runs itself (async jobs: cred "internal").
import type { Credential } from "../auth/credentials.ts";
import { getCatalog } from "../catalog/store.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import { checkMaxTokens, resolveModel } from "../catalog/rules.ts";
import { zodToGlmError } from "../http/zod-error.ts";
import { Codes, GatewayError } from "../errors.ts";
import type { WaitUntil } from "../shared/wait-until.ts";
import { log } from "../shared/log.ts";
import { formatCny } from "../usage/cost.ts";
import { estimateTokens } from "../usage/estimate.ts";
import { Calls } from "./calls.ts";
import { TooLong } from "./failures.ts";
import { resolveTarget } from "./language.ts";
import { Summarizer, type Job } from "./orchestrator.ts";
import { readConfig } from "../config.ts";
import { budgets, defaultModel } from "./planner.ts";
import type * as z from "../shared/zod.ts";
import { MAX_TEXT_CHARS, summarizeInputSchema, type summarySchema } from "./schema.ts";
import { quietSink, SseSink, unusableFinish } from "./stream.ts";

export type SummarizeInput = z.infer<ReturnType<typeof summarizeInputSchema>>;
export type SummarizeResult = z.infer<ReturnType<typeof summarySchema>>;

export interface SummarizeOptions {
  requestId: string;
  signal?: AbortSignal | null;
  /** How long to wait for the first slot (x-queue-timeout-ms); 0 answers 429 at once when the limit is full. */
  queueTimeoutMs?: number;
  origin?: string | null;
  acceptLanguage?: string | null;
}

/** What the route needs besides the result: the admission slot's numbers, for response headers. */
export interface SummaryMeta {
  limit: number;
  inFlight: number;
}

/** What a summary did, for the request's log line. */
export type SummaryFacts = Record<string, unknown> & { status: number };

/** A streamed summary, open: its body, the admission's numbers, and its facts once it has ended. */
export interface StreamedSummary extends SummaryMeta {
  body: ReadableStream<Uint8Array>;
  chunks: number;
  facts: Promise<SummaryFacts>;
}

function newId(): string {
  return `sum_${crypto.randomUUID().replaceAll("-", "")}`;
}

async function prepare(env: Env, ctx: WaitUntil, input: SummarizeInput): Promise<{ model: ModelEntry; job: Job }> {
  // Checked here as well as in the route: async jobs call this service directly.
  if (typeof input.text === "string" && input.text.length > MAX_TEXT_CHARS) {
    throw new GatewayError(
      413,
      Codes.promptTooLong,
      `text is ${input.text.length.toLocaleString("en-US")} characters; the maximum is ` +
        `${MAX_TEXT_CHARS.toLocaleString("en-US")}`,
    );
  }
  const parsed = summarizeInputSchema().safeParse(input);
  if (!parsed.success) throw zodToGlmError(parsed.error);
  const body = parsed.data;
  const text = body.text.replace(/\r\n?/g, "\n");
  if (text.trim() === "")
    throw new GatewayError(400, Codes.illegalField, "invalid field text: it is empty; there is nothing to summarize");
  const catalog = await getCatalog(env, ctx);
  const model = body.model !== undefined ? resolveModel(catalog, body.model) : defaultModel(catalog);
  checkMaxTokens(model, body.max_tokens);
  const prompt = {
    target: resolveTarget(body.language, text),
    style: body.style ?? "paragraph",
    instructions: body.instructions?.trim() || undefined,
  };
  return {
    model,
    job: {
      text,
      prompt,
      budgets: budgets(model, prompt, body.max_tokens),
      maxCalls: readConfig(env).summarizeMaxUpstreamCalls,
    },
  };
}

/** The largest first call a summary can make: a single pass over the whole text, or the largest piece. */
function firstCall(job: Job): { promptTokens: number; maxOutputTokens: number } {
  const { budgets: b } = job;
  return {
    promptTokens: Math.min(estimateTokens(job.text), Math.max(b.single, b.piece)),
    maxOutputTokens: Math.max(b.finalOut, b.mapOut),
  };
}

function newCalls(env: Env, ctx: WaitUntil, cred: Credential, model: ModelEntry, opts: SummarizeOptions): Calls {
  return new Calls({
    env,
    ctx,
    cred,
    model,
    requestId: opts.requestId,
    origin: opts.origin ?? null,
    acceptLanguage: opts.acceptLanguage ?? null,
    queueTimeoutMs: opts.queueTimeoutMs ?? 0,
    signal: opts.signal ?? null,
  });
}

/** Errors leave the service as GatewayErrors. */
function publicError(err: unknown): unknown {
  if (err instanceof TooLong) return new GatewayError(400, Codes.promptTooLong, err.message);
  return err;
}

function usageOf(calls: Calls) {
  const t = calls.totals();
  return {
    usage: {
      prompt_tokens: t.prompt_tokens,
      completion_tokens: t.completion_tokens,
      total_tokens: t.prompt_tokens + t.completion_tokens,
    },
    cost_nano: t.cost_nano,
  };
}

/** What a summary did (also when it failed), for the request's log line. */
export function summaryFields(calls: Calls, model: ModelEntry, chunks: number): Record<string, unknown> {
  const { usage, cost_nano } = usageOf(calls);
  return {
    model: model.id,
    chunks,
    upstream_calls: calls.records.length,
    prompt_tokens: usage.prompt_tokens,
    completion_tokens: usage.completion_tokens,
    cost_cny: formatCny(cost_nano),
    estimated: calls.records.some((r) => r.estimated),
  };
}

/** summarizeText plus what the HTTP route puts in headers and its log line. */
export async function summarizeWithMeta(
  env: Env,
  ctx: WaitUntil,
  cred: Credential,
  input: SummarizeInput,
  opts: SummarizeOptions,
): Promise<{ result: SummarizeResult; meta: SummaryMeta; facts: SummaryFacts }> {
  const { model, job } = await prepare(env, ctx, input);
  const calls = newCalls(env, ctx, cred, model, opts);
  const summarizer = new Summarizer(calls, job);
  try {
    await calls.admit(firstCall(job));
    const summary = (await summarizer.run(quietSink)) ?? "";
    const { usage, cost_nano } = usageOf(calls);
    const result: SummarizeResult = {
      id: newId(),
      object: "summary",
      model: model.id,
      summary: summary.trim(),
      usage,
      cost_cny: cost_nano / 1e9,
      chunks: summarizer.chunks,
      truncated: summarizer.truncated,
    };
    return {
      result,
      meta: { limit: calls.limit, inFlight: calls.inFlight },
      facts: { status: 200, ...summaryFields(calls, model, summarizer.chunks) },
    };
  } catch (err) {
    calls.abort(err);
    throw publicError(err);
  } finally {
    await calls.close();
  }
}

/** Summarizes without streaming; throws GatewayError. The contract the async-jobs consumer relies on. */
export async function summarizeText(
  env: Env,
  ctx: WaitUntil,
  cred: Credential,
  input: SummarizeInput,
  opts: SummarizeOptions,
): Promise<SummarizeResult> {
  return (await summarizeWithMeta(env, ctx, cred, input, opts)).result;
}

/**
 * Summarizes as a stream. Resolves as soon as the stream's first byte is ready (the first progress chunk,
 * or the summary's first token for a single pass); fails with a GatewayError when the summary fails before
 * that. Later failures end the stream with an in-band error event.
 */
export async function streamSummary(
  env: Env,
  ctx: WaitUntil,
  cred: Credential,
  input: SummarizeInput,
  opts: SummarizeOptions,
): Promise<StreamedSummary> {
  const { model, job } = await prepare(env, ctx, input);
  const calls = newCalls(env, ctx, cred, model, opts);
  try {
    await calls.admit(firstCall(job));
  } catch (err) {
    await calls.close();
    throw err;
  }
  const id = newId();
  const summarizer = new Summarizer(calls, job);
  const sink = new SseSink({
    id,
    model: model.id,
    onCancel: () => calls.abort(new GatewayError(408, Codes.network, "client closed the request")),
    closing: (outcome) => {
      const bad = unusableFinish(outcome.finishReason);
      if (bad) return { error: bad };
      const { usage, cost_nano } = usageOf(calls);
      const n = summarizer.chunks;
      // The final stream's outcome is settled here, before the orchestrator hears of it: read it directly.
      const truncated = outcome.finishReason === "length";
      return {
        fields: {
          usage,
          cost_cny: cost_nano / 1e9,
          chunks: n,
          truncated,
          progress: { stage: "done", done: n, total: n },
        },
      };
    },
  });
  let factsReady!: (f: Promise<SummaryFacts>) => void;
  const facts = new Promise<SummaryFacts>((r) => (factsReady = r));
  return new Promise<StreamedSummary>((resolve, reject) => {
    sink.onOpen = () =>
      resolve({ body: sink.readable, limit: calls.limit, inFlight: calls.inFlight, chunks: summarizer.chunks, facts });
    const run = summarizer.run(sink).then(
      () => ({ status: 200 }) as { status: number; error?: string },
      (err: unknown) => {
        calls.abort(err);
        const e = publicError(err);
        if (!sink.isOpen) {
          reject(e);
          return undefined;
        }
        const g =
          e instanceof GatewayError
            ? e
            : new GatewayError(500, Codes.internal, `internal gateway error (request ${opts.requestId})`);
        if (!(e instanceof GatewayError))
          log({ level: "error", msg: "summary failed", request_id: opts.requestId, error: String(e) });
        sink.fail(g.code, g.message);
        return { status: g.status as number, error: g.message };
      },
    );
    const ended = run.then(async (end) => {
      await calls.close();
      return {
        status: end?.status ?? 500,
        ...(end?.error ? { error: end.error } : {}),
        stream: true,
        ...summaryFields(calls, model, summarizer.chunks),
      };
    });
    ctx.waitUntil(ended);
    factsReady(ended);
  });
}
