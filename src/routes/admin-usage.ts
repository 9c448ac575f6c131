// Admin usage: one key's report, or all keys' summed; and a key's most recent per-request records.
import * as z from "../http/zod.ts";
import { KEY_ID_RE } from "../auth/credentials.ts";
import { Codes, GatewayError } from "../errors.ts";
import { adminSecurity, commonErrors, createRoute, newRouter, notFound } from "../http/openapi.ts";
import { once } from "../lazy.ts";
import { keyStub } from "../limiter/slots.ts";
import type { UsageReport, UsageTotals } from "../usage/ledger.ts";
import { rangeQuery, resolveRange, usageReportSchema } from "./usage.ts";

function add(a: UsageTotals, b: UsageTotals): UsageTotals {
  return {
    requests: a.requests + b.requests,
    prompt_tokens: a.prompt_tokens + b.prompt_tokens,
    completion_tokens: a.completion_tokens + b.completion_tokens,
    cached_tokens: a.cached_tokens + b.cached_tokens,
    // Sum in nano-CNY so the total stays exact.
    cost_cny: (Math.round(a.cost_cny * 1e9) + Math.round(b.cost_cny * 1e9)) / 1e9,
    estimated: a.estimated + b.estimated,
    errors: a.errors + b.errors,
    incomplete: a.incomplete + b.incomplete,
  };
}

function mergeBy<K extends "day" | "model">(lists: (UsageTotals & Record<K, string>)[][], k: K): (UsageTotals & Record<K, string>)[] {
  const map = new Map<string, UsageTotals & Record<K, string>>();
  for (const row of lists.flat()) {
    const prev = map.get(row[k]);
    map.set(row[k], prev ? { ...add(prev, row), [k]: row[k] } as UsageTotals & Record<K, string> : row);
  }
  return [...map.values()].sort((a, b) => a[k].localeCompare(b[k]));
}

export function mergeReports(reports: UsageReport[]): UsageReport {
  const zero: UsageTotals = { requests: 0, prompt_tokens: 0, completion_tokens: 0, cached_tokens: 0, cost_cny: 0, estimated: 0, errors: 0, incomplete: 0 };
  return {
    totals: reports.reduce((t, r) => add(t, r.totals), zero),
    by_day: mergeBy(reports.map((r) => r.by_day), "day"),
    by_model: mergeBy(reports.map((r) => r.by_model), "model"),
  };
}

async function allKeyIds(env: Env): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await env.KV.list({ prefix: "key:", ...(cursor ? { cursor } : {}) });
    ids.push(...page.keys.map((k) => k.name.slice(4)));
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  return ids;
}

export const adminUsage = newRouter();

adminUsage.openapi(
  createRoute({ method: "get", path: "/usage" }, () => ({
    tags: ["admin"], security: adminSecurity, summary: "Usage of one key (key_id) or of all keys",
    request: { query: rangeQuery().extend({ key_id: z.string().optional() }) },
    responses: { 200: { description: "Usage report", content: { "application/json": { schema: usageReportSchema().extend({ key_id: z.string().nullable() }) } } }, ...commonErrors() },
  })),
  async (c) => {
    const q = c.req.valid("query");
    const range = resolveRange(q);
    if (q.key_id !== undefined && !KEY_ID_RE.test(q.key_id)) throw new GatewayError(400, Codes.illegalField, "invalid field key_id");
    const ids = q.key_id ? [q.key_id] : await allKeyIds(c.env);
    const reports = await Promise.all(ids.map((id) => keyStub(c.env, id).usage(range.from, range.to)));
    return c.json({ key_id: q.key_id ?? null, ...range, ...mergeReports(reports) }, 200);
  },
);

const recordSchema = once(() => z.object({
  id: z.string(), request_id: z.string(), ts: z.number(), model: z.string(), kind: z.string(), stream: z.boolean(),
  status: z.number(), ended: z.string(), prompt_tokens: z.number(), completion_tokens: z.number(),
  cached_tokens: z.number(), cost_cny: z.number(), estimated: z.boolean(),
}).openapi("UsageRecord"));

adminUsage.openapi(
  createRoute({ method: "get", path: "/keys/{id}/requests" }, () => ({
    tags: ["admin"], security: adminSecurity, summary: "A key's most recent requests (kept 7 days)",
    request: {
      params: z.object({ id: z.string().openapi({ param: { name: "id", in: "path" } }) }),
      query: z.object({ limit: z.coerce.number().int().min(1).max(1000).optional() }),
    },
    responses: { 200: { description: "Newest first", content: { "application/json": { schema: z.object({ data: z.array(recordSchema()) }) } } }, ...commonErrors(), ...notFound() },
  })),
  async (c) => {
    const id = c.req.valid("param").id;
    if (!KEY_ID_RE.test(id)) throw new GatewayError(404, Codes.notFound, "no such key");
    const stub = keyStub(c.env, id);
    // An id with no key behind it is a 404, as on every other key route (its object would list nothing).
    const [info, rows] = await Promise.all([stub.info(), stub.recentUsage(c.req.valid("query").limit ?? 100)]);
    if (!info) throw new GatewayError(404, Codes.notFound, "no such key");
    return c.json({ data: rows.map(({ cost_nano, ...r }) => ({ ...r, cost_cny: cost_nano / 1e9 })) }, 200);
  },
);
