// Runs one job attempt on behalf of its key and sorts the ending into success, a failure for good, a
// transient failure (retried with backoff: only when GLM refused the call or could not be reached, so it
// billed nothing) or "no free slot" (the job waits). Both kinds run the same code as a synchronous request
// — runChat (slot, upstream, usage record) and summarizeText — with the internal credential of the key
// that submitted the job.
import type { Credential } from "../auth/credentials.ts";
import { getCatalog } from "../catalog/store.ts";
import { runChat } from "../chat/service.ts";
import { resolveModel } from "../catalog/rules.ts";
import { Codes, GatewayError } from "../errors.ts";
import type { WaitUntil } from "../shared/wait-until.ts";
import { log, type LogFields } from "../shared/log.ts";
import { codeRule } from "../pipeline/glm-codes.ts";
import { outcomeFields } from "../pipeline/index.ts";
import { summarizeWithMeta, type SummarizeInput } from "../summarize/service.ts";
import { collectChat } from "./chat-result.ts";
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
  if (e && e.code !== undefined)
    return { code: String(e.code), message: typeof e.message === "string" ? e.message : `upstream answered ${status}` };
  return { code: String(status), message: `upstream answered ${status}` };
}

/**
 * A failure after which GLM may have generated (and billed) the answer: a header timeout (GLM had the
 * request for the whole timeout), or a stream that opened and then broke off, went silent or ended with an
 * in-band error. Such a run is not retried: a retry could bill the whole answer again, up to once per
 * attempt. The job fails with the cause; a client that wants another try submits a new request_id.
 */
function billedFailure(error: GlmError): RunOutcome {
  return {
    kind: "fail",
    error: {
      code: error.code,
      message: `${error.message} (not retried: the upstream may already have billed this attempt)`,
    },
  };
}

/**
 * Runs a chat job streamed from GLM (whatever the client asked for, jobs never stream to it): the upstream
 * timeout then bounds the wait for the first token and each silence, never the answer's length, so a long
 * answer completes. The result is built from the stream in the non-streaming shape.
 */
async function runChatJob(rc: RunContext, spec: RunSpec, cred: Credential): Promise<RunOutcome> {
  const parsed = JSON.parse(spec.body) as Record<string, unknown>;
  const model = resolveModel(await getCatalog(rc.env, rc.ctx), spec.model);
  const startedAt = Date.now();
  const { sent } = await runChat({
    env: rc.env,
    ctx: rc.ctx,
    cred,
    model,
    body: JSON.stringify({ ...parsed, stream: true }),
    messages: parsed["messages"],
    stream: true,
    maxTokens: typeof parsed["max_tokens"] === "number" ? parsed["max_tokens"] : undefined,
    requestId: spec.request_id,
    queueTimeoutMs: 0,
    origin: null,
    acceptLanguage: null,
    signal: rc.signal,
    startedAt,
    kind: "job",
  });
  const line = {
    msg: "job run",
    job_id: spec.id,
    attempt: spec.attempt,
    request_id: spec.request_id,
    key_id: spec.key_id,
  };
  if (sent.kind === "answer") {
    // Refused or failed before the stream opened: GLM's error, or the gateway's when GLM never answered.
    log({ ...line, ...outcomeFields(sent.outcome), total_ms: Date.now() - startedAt });
    let body: unknown;
    try {
      body = JSON.parse(sent.body);
    } catch {
      return {
        kind: "transient",
        error: { code: Codes.network, message: `upstream answered ${sent.status} with a body that is not JSON` },
      };
    }
    const error = asGlmError(body, sent.status);
    return sent.outcome.ended === "timeout" ? billedFailure(error) : classify(sent.status, error);
  }
  const got = await collectChat(sent.body);
  const o = await sent.outcome;
  log({ ...line, ...outcomeFields(o), total_ms: Date.now() - startedAt });
  if (o.ended === "client_abort") {
    // The run lost its lease or hit its deadline: the job's object decides what happens next.
    return {
      kind: "transient",
      error: { code: Codes.network, message: "the run was stopped before the answer was complete" },
    };
  }
  if (o.ended !== "completed" || got.error) {
    return billedFailure(got.error ?? { code: Codes.network, message: `the upstream stream ended early (${o.ended})` });
  }
  if (got.choices.length === 0)
    return billedFailure({ code: Codes.network, message: "upstream answer has no choices" });
  const result: JobResult = {
    choices: got.choices,
    usage: got.usage,
    ...(got.webSearch !== undefined ? { web_search: got.webSearch } : {}),
    cost_cny: o.record.cost_nano / 1e9,
  };
  return { kind: "success", result };
}

async function runSummarizeJob(rc: RunContext, spec: RunSpec, cred: Credential): Promise<RunOutcome> {
  const input = JSON.parse(spec.body) as SummarizeInput;
  const line: LogFields = {
    msg: "job run",
    job_id: spec.id,
    kind: "summarize",
    attempt: spec.attempt,
    request_id: spec.request_id,
    key_id: spec.key_id,
  };
  const startedAt = Date.now();
  try {
    const { result: r, facts } = await summarizeWithMeta(rc.env, rc.ctx, cred, input, {
      requestId: spec.request_id,
      signal: rc.signal,
    });
    log({ ...line, ...facts, total_ms: Date.now() - startedAt });
    return {
      kind: "success",
      result: { summary: r.summary, usage: r.usage, cost_cny: r.cost_cny, chunks: r.chunks, truncated: r.truncated },
    };
  } catch (err) {
    log({
      ...line,
      level: "warn",
      status: err instanceof GatewayError ? err.status : 500,
      total_ms: Date.now() - startedAt,
    });
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
    log({
      level: "error",
      msg: "job run failed",
      job_id: spec.id,
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    });
    return {
      kind: "transient",
      error: { code: Codes.internal, message: "internal gateway error while running the job" },
    };
  }
}
