// Admin usage: one key's report (from its own object, exact), or all keys' summed (from the per-month
// roll-up, one call per month in the range whatever the number of keys; it may lag by the flush delay),
// as JSON (with totals per day and model for charts) or as CSV (one row per day, key and model); and a
// key's most recent per-request records.
import * as z from "../shared/zod.ts";
import { KEY_ID_RE } from "../auth/credentials.ts";
import { Codes, GatewayError } from "../errors.ts";
import { adminSecurity, commonErrors, createRoute, newRouter, notFound } from "../http/openapi.ts";
import { keyStub } from "../keys/stub.ts";
import { adminUsageReportSchema, usageRecordSchema, type UsageFreshness, type UsageRow } from "../usage/schema.ts";
import { monthsIn, rollupStub, type RollupRow } from "../usage/rollup.ts";
import { readConfig } from "../config.ts";
import { reportOf } from "../usage/report.ts";
import { rangeQuery, resolveRange } from "./usage.ts";

const CSV_COLUMNS = [
  "day",
  "key_id",
  "key_name",
  "model",
  "requests",
  "prompt_tokens",
  "completion_tokens",
  "cached_tokens",
  "cost_cny",
  "estimated",
  "errors",
  "incomplete",
] as const;

/** RFC 4180 quoting; a cell a spreadsheet would run as a formula (=, +, -, @) is prefixed with '. */
function csvCell(v: string | number): string {
  if (typeof v === "number") return String(v);
  const safe = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** CNY with all nine decimals the ledger keeps, never in exponent form (1e-7). */
function cnyExact(cny: number): string {
  const nano = Math.round(cny * 1e9);
  const s = String(nano).padStart(10, "0");
  return `${s.slice(0, -9)}.${s.slice(-9)}`.replace(/\.?0+$/, "");
}

export function usageCsv(rows: (UsageRow & { key_id: string; key_name: string })[]): string {
  const lines = rows.map((r) =>
    CSV_COLUMNS.map((c) => (c === "cost_cny" ? cnyExact(r.cost_cny) : csvCell(r[c]))).join(","),
  );
  return [CSV_COLUMNS.join(","), ...lines].join("\r\n") + "\r\n";
}

function toUsageRow({ cost_nano, ...r }: RollupRow): UsageRow & { key_id: string; key_name: string } {
  return { ...r, cost_cny: cost_nano / 1e9 };
}

export const adminUsage = newRouter();

adminUsage.openapi(
  createRoute({ method: "get", path: "/usage" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "Usage of one key (key_id) or of all keys, as JSON or CSV",
    request: {
      query: rangeQuery().extend({
        key_id: z.string().optional(),
        format: z
          .enum(["json", "csv"])
          .optional()
          .openapi({ description: "csv: one row per day, key and model (a download)" }),
      }),
    },
    responses: () => ({
      200: {
        description: "Usage report",
        content: {
          "application/json": { schema: adminUsageReportSchema() },
          "text/csv": {
            schema: z.string().openapi({ description: `header ${CSV_COLUMNS.join(",")}; cost_cny exact to 1e-9` }),
          },
        },
      },
      ...commonErrors(),
      ...notFound(),
    }),
  })),
  async (c) => {
    const q = c.req.valid("query");
    const range = resolveRange(q);
    if (q.key_id !== undefined && !KEY_ID_RE.test(q.key_id))
      throw new GatewayError(400, Codes.illegalField, "invalid field key_id");
    let rows: (UsageRow & { key_id: string; key_name: string })[];
    let freshness: UsageFreshness;
    if (q.key_id) {
      const stub = keyStub(c.env, q.key_id);
      // An id with no key behind it is a 404, as on every other key route: an empty report would read as
      // "this key spent nothing", a wrong answer for a mistyped id.
      const info = await stub.info();
      if (!info) throw new GatewayError(404, Codes.notFound, "no such key");
      rows = (await stub.usageRows(range.from, range.to)).map((r) => ({ ...r, key_id: info.id, key_name: info.name }));
      freshness = { source: "key", max_lag_seconds: 0, flushed_at: null };
    } else {
      const months = await Promise.all(
        monthsIn(range.from, range.to).map((m) => rollupStub(c.env, m).read(range.from, range.to)),
      );
      rows = months.flatMap((m) => m.rows.map(toUsageRow));
      const flushed = Math.max(0, ...months.map((m) => m.flushedAt ?? 0));
      freshness = {
        source: "rollup",
        max_lag_seconds: readConfig(c.env).rollupFlushMs / 1000,
        flushed_at: flushed > 0 ? new Date(flushed).toISOString() : null,
      };
    }
    if (q.format !== "csv")
      return c.json(
        {
          key_id: q.key_id ?? null,
          ...range,
          ...reportOf(rows.map(({ key_id: _, key_name: __, ...r }) => r)),
          freshness,
        },
        200,
      );
    rows.sort(
      (a, b) => a.day.localeCompare(b.day) || a.key_id.localeCompare(b.key_id) || a.model.localeCompare(b.model),
    );
    return c.body(usageCsv(rows), 200, {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": `attachment; filename="glm-edge-usage-${range.from}-to-${range.to}.csv"`,
      "x-usage-source": freshness.source,
      "x-usage-max-lag-seconds": String(freshness.max_lag_seconds),
    });
  },
);

adminUsage.openapi(
  createRoute({ method: "get", path: "/keys/{id}/requests" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "A key's most recent requests (kept 8 days)",
    request: {
      params: z.object({ id: z.string().openapi({ param: { name: "id", in: "path" } }) }),
      query: z.object({ limit: z.coerce.number().int().min(1).max(1000).optional() }),
    },
    responses: () => ({
      200: {
        description: "Newest first",
        content: { "application/json": { schema: z.object({ data: z.array(usageRecordSchema()) }) } },
      },
      ...commonErrors(),
      ...notFound(),
    }),
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
