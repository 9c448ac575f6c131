// GET /v1/usage: the caller's own usage and cost per day and model, from its key's Durable Object.
import * as z from "../shared/zod.ts";
import { requireCaller } from "../http/middleware.ts";
import { Codes, GatewayError } from "../errors.ts";
import { bearerSecurity, commonErrors, createRoute, newRouter } from "../http/openapi.ts";
import { once } from "../lazy.ts";
import { keyStub } from "../keys/stub.ts";
import { utcDay } from "../usage/ledger.ts";
import { usageReportSchema } from "../usage/schema.ts";

export const rangeQuery = once(() => {
  const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "expected YYYY-MM-DD");
  return z.object({
    from: day.optional().openapi({ example: "2026-11-01" }),
    to: day.optional().openapi({ example: "2026-11-30" }),
  });
});

const MAX_RANGE_DAYS = 400;

/** Resolves a date range: default the last 30 days; at most 400 days; from <= to. */
export function resolveRange(
  q: { from?: string | undefined; to?: string | undefined },
  now = Date.now(),
): { from: string; to: string } {
  const to = q.to ?? utcDay(now);
  const from = q.from ?? utcDay(Date.parse(to + "T00:00:00Z") - 29 * 86_400_000);
  const span = (Date.parse(to + "T00:00:00Z") - Date.parse(from + "T00:00:00Z")) / 86_400_000;
  if (!Number.isFinite(span))
    throw new GatewayError(400, Codes.illegalField, "invalid field from/to: not a calendar date");
  if (span < 0) throw new GatewayError(400, Codes.illegalField, "invalid field from: it is after to");
  if (span > MAX_RANGE_DAYS)
    throw new GatewayError(400, Codes.illegalField, `invalid field from: the range is at most ${MAX_RANGE_DAYS} days`);
  return { from, to };
}

export const usage = newRouter();

usage.openapi(
  createRoute({ method: "get", path: "/usage" }, () => ({
    tags: ["usage"],
    security: bearerSecurity,
    summary: "Your key's usage and cost",
    request: { query: rangeQuery() },
    responses: () => ({
      200: { description: "Usage report", content: { "application/json": { schema: usageReportSchema() } } },
      ...commonErrors(),
    }),
  })),
  async (c) => {
    const range = resolveRange(c.req.valid("query"));
    const caller = await requireCaller(c);
    const report = await keyStub(c.env, caller.id).usage(range.from, range.to);
    return c.json({ ...range, ...report }, 200);
  },
);
