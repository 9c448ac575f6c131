// Usage as the API shows it: totals, the report per day and model (GET /v1/usage, GET /admin/usage), one request's
// record (GET /admin/keys/{id}/requests). One definition documents /openapi.json and types the ledger's answers and
// records (src/usage/ledger.ts); each is built on first use (src/lazy.ts).
import * as z from "../shared/zod.ts";
import { once } from "../lazy.ts";

export const usageTotalsSchema = once(() =>
  z.object({
    requests: z.number(),
    prompt_tokens: z.number(),
    completion_tokens: z.number(),
    cached_tokens: z.number(),
    cost_cny: z.number(),
    estimated: z.number().openapi({ description: "records whose tokens were estimated (usage missing upstream)" }),
    errors: z.number(),
    incomplete: z.number(),
  }),
);

/** One row per day and model: what the admin charts stack and the CSV export lists. */
export const usageRowSchema = once(() => usageTotalsSchema().extend({ day: z.string(), model: z.string() }));

export const usageReportSchema = once(() =>
  z
    .object({
      from: z.string(),
      to: z.string(),
      totals: usageTotalsSchema(),
      by_day: z.array(usageTotalsSchema().extend({ day: z.string() })),
      by_model: z.array(usageTotalsSchema().extend({ model: z.string() })),
    })
    .openapi("UsageReport"),
);

/** GET /admin/usage as JSON: the report of one key or of all keys, with totals per day and model and its freshness. */
export const adminUsageReportSchema = once(() =>
  usageReportSchema().extend({
    key_id: z.string().nullable(),
    by_day_model: z
      .array(usageRowSchema())
      .openapi({ description: "totals per day and model, for charts stacked by model" }),
    freshness: z
      .object({
        source: z.enum(["key", "rollup"]),
        max_lag_seconds: z.number(),
        // The roll-up's newest write in the months read (keys flush only when they changed).
        flushed_at: z.string().nullable(),
      })
      .openapi({
        description:
          "key: the key's own ledger, exact. rollup (all keys): a key's records arrive within max_lag_seconds of its " +
          "first unsent change",
      }),
  }),
);

/** How a request ended, as its record says. */
export const ENDINGS = [
  "completed",
  "client_abort",
  "upstream_error",
  "upstream_break",
  "timeout",
  // The client stopped reading (without closing) for longer than a lease lives: the gateway ended it.
  "client_stalled",
  // The request's concurrency slot was lost and could not be retaken: the gateway ended it.
  "slot_lost",
  "rejected",
] as const;

/** One upstream attempt's record as GET /admin/keys/{id}/requests shows it (the ledger keeps the cost in nano-CNY). */
export const usageRecordSchema = once(() =>
  z
    .object({
      id: z.string(),
      request_id: z.string(),
      ts: z.number(),
      model: z.string(),
      kind: z.enum(["chat", "summarize", "job"]),
      stream: z.boolean(),
      status: z.number(),
      ended: z.enum(ENDINGS),
      prompt_tokens: z.number(),
      completion_tokens: z.number(),
      cached_tokens: z.number(),
      cost_cny: z.number(),
      estimated: z.boolean(),
      account: z.string().openapi({ description: "the upstream account the attempt went to" }),
      attempt: z.number().int().openapi({ description: "the attempt's number among the request's attempts (1 first)" }),
    })
    .openapi("UsageRecord"),
);

export type UsageTotals = z.infer<ReturnType<typeof usageTotalsSchema>>;
export type UsageRow = z.infer<ReturnType<typeof usageRowSchema>>;
/** A range's report as the ledger answers it; the route adds the range (`from`, `to`). */
export type UsageReport = Omit<z.infer<ReturnType<typeof usageReportSchema>>, "from" | "to">;
/** Where an admin usage answer comes from, and how far behind the keys' own ledgers it may be. */
export type UsageFreshness = z.infer<ReturnType<typeof adminUsageReportSchema>>["freshness"];
