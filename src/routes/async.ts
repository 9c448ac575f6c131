// Async jobs in GLM's shape: POST /async/chat/completions (and /async/summarize) answers at once with a
// task id and PROCESSING; the work runs on the job queue; GET /async-result/{id} polls it, and a signed
// webhook to `callback_url` announces the end. Mounted at /v1 and /api/paas/v4 like the rest of the API.
import * as z from "../shared/zod.ts";
import type { Context } from "hono";
import { getCatalog } from "../catalog/store.ts";
import { chatRequestSchema } from "../chat/schema.ts";
import { checkMaxTokens, resolveModel } from "../catalog/rules.ts";
import { sha256Hex } from "../auth/crypto.ts";
import { requireCaller } from "../http/middleware.ts";
import type { Caller } from "../keys/types.ts";
import { utcDay } from "../usage/ledger.ts";
import { Codes, GatewayError } from "../errors.ts";
import type { AppEnv } from "../http/context.ts";
import { bearerSecurity, commonErrors, createRoute, errorSchema, newRouter, notFound } from "../http/openapi.ts";
import { keyStub } from "../keys/stub.ts";
import { readConfig } from "../config.ts";
import { MAX_METADATA_BYTES } from "../jobs/config.ts";
import { checkCallbackUrl, MAX_CALLBACK_URL_LENGTH, underAllowedPrefix } from "../jobs/ssrf.ts";
import { jobIndexStub } from "../jobs/job-index.ts";
import { JOB_ID_RE, jobStub, newJobId } from "../jobs/store.ts";
import { asyncResultSchema, asyncTaskSchema, type JobKind } from "../jobs/schema.ts";
import { once } from "../lazy.ts";
import { defaultModel } from "../summarize/planner.ts";
import { MAX_TEXT_CHARS, summarizeRequestSchema } from "../summarize/schema.ts";
import type { SummarizeInput } from "../summarize/service.ts";

const asyncFields = once(() => ({
  callback_url: z.string().max(MAX_CALLBACK_URL_LENGTH).optional().openapi({
    description: "https URL that receives the result as a signed POST (Standard Webhooks) when the job ends",
    example: "https://example.com/hooks/glm",
  }),
  metadata: z
    .record(z.string(), z.unknown())
    .optional()
    .openapi({
      description: `Your own data, echoed in the result and the webhook (at most ${MAX_METADATA_BYTES} bytes of JSON)`,
      example: { ticket: "T-1042" },
    }),
}));

const noStream = once(() =>
  z.boolean().optional().openapi({ description: "false or absent: async jobs do not stream" }),
);

// Built from the sync schemas' fields (not extended from them) so the documents say exactly what is
// accepted: the summarize body stays strict, and `stream` is documented as refused.
const asyncChatRequestSchema = once(() =>
  z
    .looseObject({ ...chatRequestSchema().shape, stream: noStream(), ...asyncFields() })
    .openapi("AsyncChatCompletionRequest"),
);
const asyncSummarizeRequestSchema = once(() =>
  z
    .strictObject({ ...summarizeRequestSchema().shape, stream: noStream(), ...asyncFields() })
    .openapi("AsyncSummarizeRequest"),
);

const idParam = once(() =>
  z.object({
    id: z.string().openapi({ param: { name: "id", in: "path" }, example: "job_3f7c0c4e9b2a4d6f8e1a2b3c4d5e6f70" }),
  }),
);

const queueDown = once(() => ({
  description: "Gateway misconfigured, limiter or job queue unavailable",
  content: { "application/json": { schema: errorSchema() } },
}));

const submitResponses = once(() => ({
  200: {
    description: "Accepted: poll GET /async-result/{id} or wait for the webhook",
    content: { "application/json": { schema: asyncTaskSchema() } },
  },
  ...commonErrors(),
  403: {
    description: "A browser token (they may not submit jobs)",
    content: { "application/json": { schema: errorSchema() } },
  },
  429: {
    description:
      "The key's daily budget is used up (1308), or it has ASYNC_MAX_ACTIVE_JOBS jobs queued or running (1302); see " +
      "Retry-After. A request_id already used by this key within 24 h answers 200 with that job (header " +
      "idempotent-replayed: true).",
    headers: z.object({ "retry-after": z.string().openapi({ example: "5" }) }),
    content: { "application/json": { schema: errorSchema() } },
  },
  503: queueDown(),
}));

function illegal(field: string, why: string): GatewayError {
  return new GatewayError(400, Codes.illegalField, `invalid field ${field}: ${why}`);
}

/** The async fields shared by every job kind, checked by the gateway's rules. */
function asyncOptions(
  env: Env,
  body: {
    callback_url?: string | undefined;
    metadata?: Record<string, unknown> | undefined;
    stream?: boolean | undefined;
  },
) {
  if (body.stream === true)
    throw illegal("stream", "async jobs do not stream; poll GET /async-result/{id} or set callback_url");
  let callbackUrl: string | null = null;
  if (body.callback_url !== undefined) {
    const check = checkCallbackUrl(body.callback_url, { allowPrivate: readConfig(env).webhookAllowPrivate });
    if (!check.ok) throw illegal("callback_url", `refused because ${check.reason}`);
    callbackUrl = check.url;
  }
  let metadata: Record<string, unknown> | null = null;
  if (body.metadata !== undefined) {
    const bytes = new TextEncoder().encode(JSON.stringify(body.metadata)).byteLength;
    if (bytes > MAX_METADATA_BYTES)
      throw illegal("metadata", `${bytes} bytes of JSON is more than ${MAX_METADATA_BYTES}`);
    metadata = body.metadata;
  }
  return { callbackUrl, metadata };
}

/** Authenticates the caller now: the job later runs with the internal credential of this key. */
async function authorize(c: Context<AppEnv>, model: string): Promise<Caller> {
  const caller = await requireCaller(c);
  if (caller.token?.models && !caller.token.models.includes(model)) {
    throw new GatewayError(403, Codes.illegalField, `this token may not use model ${model}`);
  }
  return caller;
}

/**
 * The key's daily budget, checked at submission as admission checks it (spent today ≥ budget): a job that
 * could not run today is refused now with 1308, not accepted and failed later.
 */
async function checkBudget(env: Env, caller: Caller, now = Date.now()): Promise<void> {
  if (caller.daily_budget_cny === null && caller.daily_token_limit === null) return;
  const today = utcDay(now);
  const { totals } = await keyStub(env, caller.id).usage(today, today);
  const overBudget =
    caller.daily_budget_cny !== null && Math.round(totals.cost_cny * 1e9) >= Math.round(caller.daily_budget_cny * 1e9);
  const overTokens =
    caller.daily_token_limit !== null && totals.prompt_tokens + totals.completion_tokens >= caller.daily_token_limit;
  if (!overBudget && !overTokens) return;
  const midnight = Date.parse(`${today}T00:00:00Z`) + 86_400_000;
  throw new GatewayError(
    429,
    Codes.usageCap,
    `daily ${overBudget ? "budget" : "token limit"} of this key is used up; it resets at ` +
      `${new Date(midnight).toISOString().slice(0, 10)}T00:00:00Z`,
    { "retry-after": String(Math.max(1, Math.ceil((midnight - now) / 1000))) },
  );
}

interface Submission {
  kind: JobKind;
  model: string;
  requestId: string;
  callbackUrl: string | null;
  metadata: Record<string, unknown> | null;
  body: string;
}

async function submit(c: Context<AppEnv>, s: Submission) {
  const caller = await authorize(c, s.model);
  const keyId = caller.id;
  // A key may pin where its signed webhooks go (admin-set webhook_urls).
  if (s.callbackUrl !== null && caller.webhook_urls && !underAllowedPrefix(s.callbackUrl, caller.webhook_urls)) {
    throw illegal("callback_url", "it is not under any of this key's allowed webhook URLs (webhook_urls)");
  }
  await checkBudget(c.env, caller);
  const id = newJobId();
  const answer = { id, request_id: s.requestId, model: s.model, task_status: "PROCESSING" as const };
  const index = jobIndexStub(c.env, keyId);
  const fingerprint = await sha256Hex(JSON.stringify([s.kind, s.model, s.body, s.callbackUrl, s.metadata]));
  const reserved = await index.reserve({
    jobId: id,
    requestId: s.requestId,
    model: s.model,
    fingerprint,
    cap: readConfig(c.env).maxActiveJobs,
  });
  if (!reserved.ok && "existing" in reserved) {
    const prior = reserved.existing;
    if (!prior.sameRequest) {
      throw new GatewayError(
        400,
        Codes.illegalField,
        `invalid field request_id: it names job ${prior.id}, submitted within 24 hours with a different request; use ` +
          `a new request_id`,
      );
    }
    // A retried submission: the job it started, never a second run (as Stripe's idempotent requests).
    Object.assign(c.get("logLine"), {
      job_id: prior.id,
      job_kind: s.kind,
      model: prior.model,
      idempotent_replay: true,
    });
    c.header("idempotent-replayed", "true");
    return { ...answer, id: prior.id, model: prior.model };
  }
  if (!reserved.ok) {
    throw new GatewayError(
      429,
      Codes.concurrency,
      `this key has ${reserved.active} async jobs queued or running, its limit (ASYNC_MAX_ACTIVE_JOBS); submit more ` +
        `when one has finished`,
      { "retry-after": "5" },
    );
  }
  const job = jobStub(c.env, id);
  let accepted = false;
  try {
    const created = await job.create({
      record: {
        id,
        key_id: keyId,
        kind: s.kind,
        model: s.model,
        request_id: s.requestId,
        callback_url: s.callbackUrl,
        metadata: s.metadata,
        created_at: Date.now(),
      },
      body: s.body,
    });
    // 128 random bits do not collide; if they ever did, refusing beats answering with someone else's job.
    if (!created) throw new GatewayError(500, Codes.internal, "could not allocate a job id; retry");
    try {
      await c.env.JOB_QUEUE.send({ job: id });
    } catch (err) {
      await job.discard().catch(() => undefined);
      c.get("logLine")["error"] = String(err);
      throw new GatewayError(
        503,
        Codes.unavailable,
        "the job queue is unavailable, so the job was not accepted; retry in a few seconds",
        { "retry-after": "2" },
      );
    }
    accepted = true;
  } finally {
    // Not accepted: the request_id and the slot under the cap are free again.
    if (!accepted) await index.forget(id).catch(() => undefined);
  }
  Object.assign(c.get("logLine"), { job_id: id, job_kind: s.kind, model: s.model });
  return answer;
}

export const asyncJobs = newRouter();

asyncJobs.openapi(
  createRoute({ method: "post", path: "/async/chat/completions" }, () => ({
    tags: ["async"],
    security: bearerSecurity,
    summary: "Submit a chat completion as an async job",
    description:
      "The body of POST /chat/completions (without `stream`) plus optional `callback_url` and `metadata`. Answers at " +
      "once; the job takes a slot of the key's in-flight limit when it runs, waits (it does not fail) while none " +
      "is free, and retries transient upstream failures.",
    request: { body: { required: true, content: { "application/json": { schema: asyncChatRequestSchema() } } } },
    responses: submitResponses,
  })),
  async (c) => {
    const body = c.req.valid("json");
    const model = resolveModel(await getCatalog(c.env, c.executionCtx), body.model);
    checkMaxTokens(model, body.max_tokens);
    const { callbackUrl, metadata } = asyncOptions(c.env, body);
    const requestId = body.request_id ?? c.get("requestId");
    // Forward the client's own fields untouched (unknown ones included), minus the gateway's.
    const raw = (await c.req.json()) as Record<string, unknown>;
    delete raw["callback_url"];
    delete raw["metadata"];
    delete raw["stream"];
    const upstreamBody = JSON.stringify({ ...raw, request_id: requestId });
    return c.json(
      await submit(c, { kind: "chat", model: model.id, requestId, callbackUrl, metadata, body: upstreamBody }),
      200,
    );
  },
);

asyncJobs.openapi(
  createRoute({ method: "get", path: "/async-result/{id}" }, () => ({
    tags: ["async"],
    security: bearerSecurity,
    summary: "An async job's status and result, with its webhook deliveries",
    description:
      "PROCESSING, SUCCESS (with `choices` and `usage`, or `summary`) or FAIL (with `error`). A key sees only its " +
      "own jobs. Results are kept 7 days.",
    request: { params: idParam() },
    responses: () => ({
      200: { description: "The job", content: { "application/json": { schema: asyncResultSchema() } } },
      ...commonErrors(),
      ...notFound(),
    }),
  })),
  async (c) => {
    const id = c.req.valid("param").id;
    const caller = await requireCaller(c);
    const view = JOB_ID_RE.test(id) ? await jobStub(c.env, id).view(caller.id) : null;
    if (!view) throw new GatewayError(404, Codes.notFound, "no such job for this key (results are kept 7 days)");
    return c.json(view, 200);
  },
);

asyncJobs.openapi(
  createRoute({ method: "post", path: "/async/summarize" }, () => ({
    tags: ["async"],
    security: bearerSecurity,
    summary: "Submit a summary as an async job",
    description:
      "The JSON body of POST /summarize (without `stream`) plus optional `callback_url` and `metadata`. Answers at " +
      "once; the result carries `summary`, `usage`, `cost_cny` and `chunks`.",
    request: { body: { required: true, content: { "application/json": { schema: asyncSummarizeRequestSchema() } } } },
    responses: submitResponses,
  })),
  async (c) => {
    const body = c.req.valid("json");
    // The checks summarizeText makes, made now so that a bad request fails at submission, not later.
    if (body.text.length > MAX_TEXT_CHARS) {
      throw new GatewayError(
        413,
        Codes.promptTooLong,
        `text is ${body.text.length.toLocaleString("en-US")} characters; the maximum is ` +
          `${MAX_TEXT_CHARS.toLocaleString("en-US")}`,
      );
    }
    if (body.text.trim() === "") throw illegal("text", "it is empty; there is nothing to summarize");
    const catalog = await getCatalog(c.env, c.executionCtx);
    // The model is fixed now (the default may change later) and reported in the answer.
    const model = body.model !== undefined ? resolveModel(catalog, body.model) : defaultModel(catalog);
    checkMaxTokens(model, body.max_tokens);
    const { callbackUrl, metadata } = asyncOptions(c.env, body);
    const input: SummarizeInput = { text: body.text, model: model.id };
    if (body.style !== undefined) input.style = body.style;
    if (body.language !== undefined) input.language = body.language;
    if (body.max_tokens !== undefined) input.max_tokens = body.max_tokens;
    if (body.instructions !== undefined) input.instructions = body.instructions;
    const requestId = c.get("requestId");
    return c.json(
      await submit(c, {
        kind: "summarize",
        model: model.id,
        requestId,
        callbackUrl,
        metadata,
        body: JSON.stringify(input),
      }),
      200,
    );
  },
);
