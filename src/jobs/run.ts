// Runs one job attempt on behalf of its key and sorts the ending into success, a failure for good, a
// transient failure (retried with backoff) or "no free slot" (the job waits). Both kinds run the same
// code as a synchronous request — runChat (slot, upstream, usage record) and summarizeText — with the
// internal credential of the key that submitted the job.
import type { Credential } from "../auth/credentials.ts";
import { getCatalog } from "../catalog/store.ts";
import { runChat } from "../chat/service.ts";
import { resolveModel } from "../chat/validate.ts";
import { Codes, GatewayError } from "../errors.ts";
import type { WaitUntil } from "../http/context.ts";
import { log, type LogFields } from "../http/log.ts";
import { codeRule } from "../pipeline/glm-codes.ts";
import { outcomeFields } from "../pipeline/index.ts";
import { summarizeWithMeta, type SummarizeInput } from "../summarize/service.ts";
import type { GlmError, JobResult, RunOutcome, RunSpec } from "./types.ts";

/** Sorts a failed attempt by GLM's code table: no slot → wait, transient → retry, anything else → fail. */
export function classify(status: number, error: GlmError): RunOutcome {
  const rule = codeRule(error.code, status);
  if (rule.noSlot) return { kind: "wait", error };
  return rule.transient ? { kind: "transient", error } : { kind: "fail", error };
}

export interface RunContext {
  env: Env;
  ctx: WaitUntil;
  /** Aborted when the run loses its lease: the upstream call stops. */
  signal: AbortSignal;
}

function asGlmError(body: unknown, status: number): GlmError {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (e && e.code !== undefined) return { code: String(e.code), message: typeof e.message === "string" ? e.message : `upstream answered ${status}` };
  return { code: String(status), message: `upstream answered ${status}` };
}

async function runChatJob(rc: RunContext, spec: RunSpec, cred: Credential): Promise<RunOutcome> {
  const parsed = JSON.parse(spec.body) as { messages?: unknown; max_tokens?: unknown };
  const model = resolveModel(await getCatalog(rc.env, rc.ctx), spec.model);
  const startedAt = Date.now();
  const { sent } = await runChat({
    env: rc.env, ctx: rc.ctx, cred, model, body: spec.body, messages: parsed.messages, stream: false,
    maxTokens: typeof parsed.max_tokens === "number" ? parsed.max_tokens : undefined,
    requestId: spec.request_id, queueTimeoutMs: 0, origin: null, acceptLanguage: null, signal: rc.signal, startedAt, kind: "job",
  });
  if (sent.kind !== "answer") throw new Error("a plain call answered with a stream");
  const o = sent.outcome;
  log({ msg: "job run", job_id: spec.id, attempt: spec.attempt, request_id: spec.request_id, key_id: spec.key_id, ...outcomeFields(o), total_ms: Date.now() - startedAt });
  let body: unknown;
  try {
    body = JSON.parse(sent.body);
  } catch {
    return { kind: "transient", error: { code: Codes.network, message: `upstream answered ${sent.status} with a body that is not JSON` } };
  }
  if (sent.status !== 200) return classify(sent.status, asGlmError(body, sent.status));
  const answer = body as { choices?: unknown; usage?: unknown; web_search?: unknown };
  if (!Array.isArray(answer.choices)) {
    return { kind: "transient", error: { code: Codes.network, message: "upstream answer has no choices" } };
  }
  const result: JobResult = {
    choices: answer.choices,
    usage: answer.usage,
    ...(answer.web_search !== undefined ? { web_search: answer.web_search } : {}),
    cost_cny: o.record.cost_nano / 1e9,
  };
  return { kind: "success", result };
}

async function runSummarizeJob(rc: RunContext, spec: RunSpec, cred: Credential): Promise<RunOutcome> {
  const input = JSON.parse(spec.body) as SummarizeInput;
  const line: LogFields = { msg: "job run", job_id: spec.id, kind: "summarize", attempt: spec.attempt, request_id: spec.request_id, key_id: spec.key_id };
  const startedAt = Date.now();
  try {
    const { result: r, facts } = await summarizeWithMeta(rc.env, rc.ctx, cred, input, { requestId: spec.request_id, signal: rc.signal });
    log({ ...line, ...facts, total_ms: Date.now() - startedAt });
    return { kind: "success", result: { summary: r.summary, usage: r.usage, cost_cny: r.cost_cny, chunks: r.chunks } };
  } catch (err) {
    log({ ...line, level: "warn", status: err instanceof GatewayError ? err.status : 500, total_ms: Date.now() - startedAt });
    throw err;
  }
}

/** One attempt of a job. Never throws: every ending becomes an outcome for the job's object. */
export async function runJob(rc: RunContext, spec: RunSpec): Promise<RunOutcome> {
  const cred: Credential = { kind: "internal", keyId: spec.key_id };
  try {
    if (spec.kind === "chat") return await runChatJob(rc, spec, cred);
    if (spec.kind === "summarize") return await runSummarizeJob(rc, spec, cred);
    return { kind: "fail", error: { code: Codes.badParams, message: `unknown job kind ${String(spec.kind)}` } };
  } catch (err) {
    if (err instanceof GatewayError) return classify(err.status, { code: err.code, message: err.message });
    log({ level: "error", msg: "job run failed", job_id: spec.id, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
    return { kind: "transient", error: { code: Codes.internal, message: "internal gateway error while running the job" } };
  }
}
