// POST /v1/summarize (and /api/paas/v4/summarize): a JSON body, or raw text (text/plain or text/markdown)
// with the options as query parameters. Checks the content type and hands over to the summarize service.
import * as z from "../shared/zod.ts";
import type { MiddlewareHandler } from "hono";
import { Codes, GatewayError } from "../errors.ts";
import type { AppEnv } from "../http/context.ts";
import { bearerSecurity, commonErrors, createRoute, errorSchema, limitErrors, newRouter } from "../http/openapi.ts";
import {
  MAX_TEXT_CHARS,
  summarizeQuerySchema,
  summarizeRequestSchema,
  summarySchema,
  type SummarizeRequest,
} from "../summarize/schema.ts";
import { streamSummary, summarizeWithMeta, type SummarizeInput } from "../summarize/service.ts";
import { formatCny } from "../usage/cost.ts";
import { queueTimeout } from "./chat.ts";

const TEXT_TYPES = new Set(["text/plain", "text/markdown"]);
const JSON_TYPE = /^application\/(?:[\w.-]+\+)?json$/;

function bodyKind(header: string | undefined): "json" | "text" {
  const [type = "", ...params] = (header ?? "").split(";").map((p) => p.trim().toLowerCase());
  if (JSON_TYPE.test(type)) return "json";
  if (TEXT_TYPES.has(type)) {
    const charset = params
      .find((p) => p.startsWith("charset="))
      ?.slice(8)
      .replace(/"/g, "");
    if (charset && charset !== "utf-8" && charset !== "utf8" && charset !== "us-ascii") {
      throw new GatewayError(
        415,
        Codes.badParams,
        `unsupported charset ${JSON.stringify(charset)}: send the text as UTF-8`,
      );
    }
    return "text";
  }
  throw new GatewayError(
    415,
    Codes.badParams,
    `unsupported content type ${JSON.stringify(type || "(none)")}: send application/json, or the raw text as ` +
      `text/plain (options as query parameters)`,
  );
}

/** Runs before the body validators, so any other content type gets a GLM-style 415. */
const contentType: MiddlewareHandler<AppEnv> = async function contentType(c, next) {
  bodyKind(c.req.header("content-type"));
  await next();
};

const STREAM_DOC = [
  "With `stream: true` (or `?stream=true`) the answer is `text/event-stream` in the chat-completion chunk shape, " +
    "ending with `data: [DONE]`:",
  "1. For a text that needs several pieces, progress chunks first: " +
    '`{"id","created","model","choices":[],"progress":{"done","total","stage"}}` with stage `map` (pieces summarized ' +
    "/ pieces), `combine` (merges done / merges) and `final` (the summary starts). `choices` is empty, like " +
    "OpenAI's usage-only chunk, so OpenAI-style parsers read past them; a client that wants progress reads " +
    "`progress`. During long silences an SSE comment line `: keep-alive` is sent (parsers ignore it).",
  "2. The summary itself: GLM's chunks (`choices[0].delta.content`), passed through as GLM sends them.",
  "3. A closing chunk with `choices: []`, the summed `usage` of every upstream call, `cost_cny`, `chunks` and " +
    "`progress.stage` `done`; then `data: [DONE]`.",
  'A failure after the stream started ends it with `data: {"error":{"code","message"}}` and no [DONE]: a partial ' +
    "summary is never presented as complete.",
].join("\n");

const route = createRoute({ method: "post", path: "/summarize", middleware: [contentType] as const }, () => ({
  tags: ["summarize"],
  security: bearerSecurity,
  summary: "Summarize a text of any length (up to 2,000,000 characters), plain or streamed",
  description: [
    `Summarizes up to ${MAX_TEXT_CHARS.toLocaleString("en-US")} characters (UTF-16 code units; a CJK character ` +
      `counts 1) in Chinese, English or the language asked for.`,
    "A text that fits the model's context is summarized in one call; a longer one is split on paragraph and sentence " +
      "boundaries, the pieces are summarized in parallel (as many at once as the key has free slots, at most 6), and " +
      "the partial summaries are merged in order.",
    "Every upstream call takes a slot from the key's in-flight limit; the first one is admission (429 when the limit " +
      "is full, or wait with `x-queue-timeout-ms`), later ones wait up to 30 s for a slot.",
    "The body is JSON, or the raw text as `text/plain` / `text/markdown` (UTF-8) with the options as query " +
      "parameters. The default model is the catalog's cheapest active model (ties: the largest context).",
    "Large Chinese texts: send the JSON as UTF-8 (not \\u-escaped) or as text/plain; bodies over 8 MiB are refused.",
    "",
    STREAM_DOC,
  ].join("\n"),
  request: {
    headers: z.object({
      "x-queue-timeout-ms": z
        .string()
        .optional()
        .openapi({ description: "wait up to this long for the first slot (max 60000)" }),
      "x-request-id": z.string().optional(),
    }),
    query: summarizeQuerySchema(),
    body: {
      required: false,
      content: {
        "application/json": { schema: summarizeRequestSchema() },
        "text/plain": { schema: z.string().openapi({ description: "The raw text; options as query parameters" }) },
        "text/markdown": { schema: z.string().openapi({ description: "As text/plain" }) },
      },
    },
  },
  responses: () => ({
    200: {
      description: "The summary; `text/event-stream` when streaming (see above)",
      headers: z.object({
        "x-request-id": z.string(),
        "x-summarize-chunks": z
          .string()
          .openapi({ description: "pieces the text was summarized in (streams: as planned when the stream opened)" }),
        "x-concurrency-limit": z.string(),
        "x-concurrency-in-flight": z.string(),
        "x-cost-cny": z.string().optional().openapi({ description: "non-streaming only" }),
      }),
      content: {
        "application/json": { schema: summarySchema() },
        "text/event-stream": {
          schema: z
            .string()
            .openapi({ description: "progress chunks, the summary's chunks, a closing usage chunk, data: [DONE]" }),
        },
      },
    },
    ...commonErrors(),
    413: {
      description: `Text longer than ${MAX_TEXT_CHARS.toLocaleString("en-US")} characters (1261), or body over 8 MiB`,
      content: { "application/json": { schema: errorSchema() } },
    },
    415: {
      description: "Body is neither JSON nor UTF-8 text/plain or text/markdown",
      content: { "application/json": { schema: errorSchema() } },
    },
    ...limitErrors(),
  }),
}));

export const summarize = newRouter();

summarize.openapi(route, async (c) => {
  const query = c.req.valid("query");
  let input: SummarizeInput & { stream?: boolean | undefined };
  if (bodyKind(c.req.header("content-type")) === "json") {
    const given = Object.keys(query).filter((k) => query[k as keyof typeof query] !== undefined);
    if (given.length > 0) {
      throw new GatewayError(
        400,
        Codes.illegalField,
        `invalid query parameter ${given[0]}: with a JSON body, options go in the body`,
      );
    }
    // The JSON validator ran (the text/plain schemas are documentation only): this is the parsed object.
    input = c.req.valid("json") as SummarizeRequest;
  } else {
    input = { text: await c.req.text(), ...query };
  }
  const { stream, ...rest } = input;
  const opts = {
    requestId: c.get("requestId"),
    signal: c.req.raw.signal,
    queueTimeoutMs: queueTimeout(c),
    origin: c.req.header("origin") ?? null,
    acceptLanguage: c.req.header("accept-language") ?? null,
  };
  if (stream === true) {
    const s = await streamSummary(c.env, c.executionCtx, c.get("cred"), rest, opts);
    // The log line is written by the request middleware when the stream has ended.
    c.set("settled", s.facts);
    const headers = new Headers({
      "content-type": "text/event-stream;charset=UTF-8",
      "cache-control": "no-cache",
      "x-request-id": opts.requestId,
      "x-concurrency-limit": String(s.limit),
      "x-concurrency-in-flight": String(s.inFlight),
      "x-summarize-chunks": String(s.chunks),
    });
    return new Response(s.body, { status: 200, headers }) as never;
  }
  const { result, meta, facts } = await summarizeWithMeta(c.env, c.executionCtx, c.get("cred"), rest, opts);
  Object.assign(c.get("logLine"), facts);
  c.header("x-summarize-chunks", String(result.chunks));
  c.header("x-cost-cny", formatCny(Math.round(result.cost_cny * 1e9)));
  c.header("x-concurrency-limit", String(meta.limit));
  c.header("x-concurrency-in-flight", String(meta.inFlight));
  return c.json(result, 200);
});
