// GET /v1/models and /v1/models/{id}: the catalog in OpenAI's list shape, with GLM's context, output
// limit, prices and per-tier concurrency. Public (model metadata is not secret), served from the
// isolate's catalog cache with an ETag, so it costs no KV round trip on the hot path.
import * as z from "../shared/zod.ts";
import type { Context } from "hono";
import { getCatalog, type CatalogView } from "../catalog/store.ts";
import { capabilitiesSchema, concurrencySchema, type ModelEntry } from "../catalog/schema.ts";
import { Codes, GatewayError } from "../errors.ts";
import { createRoute, newRouter, notFound } from "../http/openapi.ts";
import type { AppEnv } from "../http/context.ts";
import { once } from "../lazy.ts";

export const modelSchema = once(() =>
  z
    .object({
      id: z.string(),
      object: z.literal("model"),
      created: z.number(),
      owned_by: z.string(),
      context_window: z.number(),
      max_output_tokens: z.number(),
      pricing: z.object({
        currency: z.literal("CNY"),
        unit: z.literal("1M tokens"),
        input: z.number(),
        output: z.number(),
        cached_input: z.number().nullable(),
      }),
      concurrency: concurrencySchema(),
      capabilities: capabilitiesSchema(),
      status: z.string(),
    })
    .openapi("Model"),
);

export function toApiModel(m: ModelEntry): z.infer<ReturnType<typeof modelSchema>> {
  return {
    id: m.id,
    object: "model",
    created: m.created,
    owned_by: "zhipuai",
    context_window: m.context_window,
    max_output_tokens: m.max_output_tokens,
    pricing: { currency: "CNY", unit: "1M tokens", ...m.pricing },
    concurrency: m.concurrency,
    capabilities: m.capabilities,
    status: m.status,
  };
}

const CACHE_CONTROL = "public, max-age=30";

function notModified(c: Context<AppEnv>, view: CatalogView, suffix = ""): Response | undefined {
  const etag = view.etag.slice(0, -1) + suffix + '"';
  c.header("etag", etag);
  c.header("cache-control", CACHE_CONTROL);
  const inm = c.req.header("if-none-match");
  if (inm && inm.split(",").some((t) => t.trim() === etag || t.trim() === `W/${etag}`)) return c.body(null, 304);
  return undefined;
}

export const models = newRouter();

models.openapi(
  createRoute({ method: "get", path: "/models" }, () => ({
    tags: ["models"],
    summary: "List models with limits and prices",
    responses: () => ({
      200: {
        description: "The catalog",
        content: {
          "application/json": { schema: z.object({ object: z.literal("list"), data: z.array(modelSchema()) }) },
        },
      },
      304: { description: "Not modified (If-None-Match)" },
    }),
  })),
  async (c) => {
    const view = await getCatalog(c.env, c.executionCtx);
    const nm = notModified(c, view);
    if (nm) return nm as never;
    const data = view.catalog.models.filter((m) => m.status !== "disabled").map(toApiModel);
    return c.json({ object: "list" as const, data }, 200);
  },
);

models.openapi(
  createRoute({ method: "get", path: "/models/{id}" }, () => ({
    tags: ["models"],
    summary: "One model",
    request: {
      params: z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "glm-4-plus" }) }),
    },
    responses: () => ({
      200: { description: "The model", content: { "application/json": { schema: modelSchema() } } },
      304: { description: "Not modified (If-None-Match)" },
      ...notFound(),
    }),
  })),
  async (c) => {
    const view = await getCatalog(c.env, c.executionCtx);
    const m = view.byId.get(c.req.valid("param").id);
    if (!m || m.status === "disabled") throw new GatewayError(404, Codes.unknownModel, "model does not exist");
    const nm = notModified(c, view, `-${m.id}`);
    if (nm) return nm as never;
    return c.json(toApiModel(m), 200);
  },
);
