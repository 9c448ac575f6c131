// POST /v1/chat/completions (and /api/paas/v4/chat/completions): validate by GLM's rules, then hand over
// to the chat service, which streams GLM's answer straight through.
import * as z from "../shared/zod.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import { getCatalog, type CatalogView } from "../catalog/store.ts";
import { chatRequestSchema, chatResponseSchema } from "../chat/schema.ts";
import { runChat, withRequestId } from "../chat/service.ts";
import { checkMaxTokens, resolveModel } from "../catalog/rules.ts";
import { Codes, GatewayError } from "../errors.ts";
import { outcomeFields } from "../pipeline/index.ts";
import { formatCny } from "../usage/cost.ts";
import { bearerSecurity, commonErrors, createRoute, limitErrors, newRouter } from "../http/openapi.ts";
import type { Context } from "hono";
import type { AppEnv } from "../http/context.ts";

/**
 * x-fallback-models: models to try in order when the requested one fails for good before its first byte.
 * Each must be served by the catalog and take the request's max_tokens; an empty header means none at all
 * (not even the key's default list).
 */
function fallbackModels(
  c: Context<AppEnv>,
  view: CatalogView,
  maxTokens: number | undefined,
): ModelEntry[] | undefined {
  const raw = c.req.header("x-fallback-models");
  if (raw === undefined) return undefined;
  const ids = raw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (ids.length > 5)
    throw new GatewayError(400, Codes.illegalField, "invalid header x-fallback-models: at most 5 models");
  return ids.map((id) => {
    const m = resolveModel(view, id);
    checkMaxTokens(m, maxTokens);
    return m;
  });
}

export function queueTimeout(c: Context<AppEnv>): number {
  const raw = c.req.header("x-queue-timeout-ms");
  if (raw === undefined || raw === "") return 0;
  if (!/^\d{1,9}$/.test(raw.trim())) {
    throw new GatewayError(
      400,
      Codes.illegalField,
      "invalid header x-queue-timeout-ms: expected milliseconds as a whole number",
    );
  }
  return Number(raw.trim());
}

const route = createRoute({ method: "post", path: "/chat/completions" }, () => ({
  tags: ["chat"],
  security: bearerSecurity,
  summary: "Chat completion (GLM-4), plain or streamed (SSE)",
  description:
    "GLM's chat API. With `stream: true` the answer is GLM's SSE stream, byte for byte; a stream that fails after it " +
    'started ends with an in-band `data: {"error":…}` event. Send `x-queue-timeout-ms` to wait for a free slot ' +
    "instead of an immediate 429. A failure before the first byte is retried (another upstream account, or the " +
    "same after a backoff), then the `x-fallback-models` (or the key's default list) are tried in order; " +
    "`x-upstream-model` and `x-upstream-attempts` say what answered.",
  request: {
    headers: z.object({
      "x-queue-timeout-ms": z
        .string()
        .optional()
        .openapi({ description: "wait up to this long for a slot (max 60000)" }),
      "x-fallback-models": z.string().optional().openapi({
        description: "comma-separated models to fall back to, in order (at most 5); empty: none",
        example: "glm-4-air-250414,glm-4-flash-250414",
      }),
      "x-request-id": z.string().optional(),
    }),
    body: { required: true, content: { "application/json": { schema: chatRequestSchema() } } },
  },
  responses: () => ({
    200: {
      description: "GLM's answer; `text/event-stream` when streaming",
      headers: z.object({
        "x-request-id": z.string(),
        "x-concurrency-limit": z.string(),
        "x-concurrency-in-flight": z.string(),
        "x-upstream-model": z
          .string()
          .openapi({ description: "the model that answered (a fallback's when the requested one failed)" }),
        "x-upstream-attempts": z.string().openapi({ description: "upstream attempts the request took" }),
        "x-cost-cny": z.string().optional().openapi({ description: "non-streaming only" }),
      }),
      content: {
        "application/json": { schema: chatResponseSchema() },
        "text/event-stream": { schema: z.string().openapi({ description: "GLM SSE chunks, then data: [DONE]" }) },
      },
    },
    ...commonErrors(),
    ...limitErrors(),
  }),
}));

export const chat = newRouter();

chat.openapi(route, async (c) => {
  const body = c.req.valid("json");
  const raw = await c.req.text();
  const catalog = await getCatalog(c.env, c.executionCtx);
  const model = resolveModel(catalog, body.model);
  checkMaxTokens(model, body.max_tokens);
  const fallbacks = fallbackModels(c, catalog, body.max_tokens);
  const requestId = body.request_id ?? c.get("requestId");
  c.set("requestId", requestId);
  // Built before admission: nothing that can throw runs between taking a slot and handing it to the pipeline.
  const headers = new Headers({ "x-request-id": requestId });
  const queueTimeoutMs = queueTimeout(c);
  const { keyId, limit, inFlight, sent } = await runChat({
    env: c.env,
    ctx: c.executionCtx,
    cred: c.get("cred"),
    model,
    body: body.request_id ? raw : withRequestId(raw, requestId),
    messages: body.messages,
    maxTokens: body.max_tokens,
    stream: body.stream === true,
    requestId,
    queueTimeoutMs,
    origin: c.req.header("origin") ?? null,
    acceptLanguage: c.req.header("accept-language") ?? null,
    signal: c.req.raw.signal,
    startedAt: c.get("startedAt"),
    kind: "chat",
    ...(fallbacks ? { fallbacks } : {}),
  });
  headers.set("x-concurrency-limit", String(limit));
  headers.set("x-concurrency-in-flight", String(inFlight));
  headers.set("content-type", sent.contentType);
  headers.set("x-upstream-model", sent.model.id);
  headers.set("x-upstream-attempts", String(sent.attempts));
  const outcome = sent.kind === "stream" ? sent.outcome : Promise.resolve(sent.outcome);
  // The log line is written by the request middleware when the answer has been sent in full.
  c.set(
    "settled",
    outcome.then((o) => ({ key_id: keyId, ...outcomeFields(o) })),
  );
  if (sent.kind === "stream") {
    headers.set("cache-control", "no-cache");
    return new Response(sent.body, { status: 200, headers }) as never;
  }
  if (sent.status === 429) headers.set("retry-after", "1");
  if (sent.status === 200) headers.set("x-cost-cny", formatCny(sent.outcome.record.cost_nano));
  return new Response(sent.body, { status: sent.status, headers }) as never;
});
