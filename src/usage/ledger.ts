// Usage records in a key's Durable Object: one row per request (kept 8 days) and one per day and model
// (kept 400 days). Strongly consistent, and written in the same call that releases the request's slot.
import type * as z from "../shared/zod.ts";
import type { ENDINGS, UsageReport, UsageRow, UsageTotals, usageRecordSchema } from "./schema.ts";

export type Ending = (typeof ENDINGS)[number];

/**
 * One upstream attempt's record as the ledger stores it: the API's record (src/usage/schema.ts) with the cost exact,
 * in integer nano-CNY. Its id is unique per gateway request (the lease id): recording the same id twice is a no-op.
 */
export type UsageRecord = Omit<z.infer<ReturnType<typeof usageRecordSchema>>, "cost_cny"> & { cost_nano: number };

const REQUEST_KEEP_MS = 8 * 86_400_000;
const DAILY_KEEP_DAYS = 400;

export function utcDay(ts: number): string {
  return new Date(ts).toISOString().slice(0, 10);
}

/** A usage_daily row's totals, exact (cost in integer nano-CNY): what the roll-up copies. */
export type ExactTotals = Omit<UsageTotals, "cost_cny"> & { cost_nano: number };

interface Row extends ExactTotals {
  [k: string]: SqlStorageValue;
}

const SUMS = `SUM(requests) AS requests, SUM(prompt_tokens) AS prompt_tokens,
  SUM(completion_tokens) AS completion_tokens,
  SUM(cached_tokens) AS cached_tokens, SUM(cost_nano) AS cost_nano, SUM(estimated) AS estimated,
  SUM(errors) AS errors, SUM(incomplete) AS incomplete`;

function totals(r: Partial<Row> | undefined): UsageTotals {
  return {
    requests: Number(r?.requests ?? 0),
    prompt_tokens: Number(r?.prompt_tokens ?? 0),
    completion_tokens: Number(r?.completion_tokens ?? 0),
    cached_tokens: Number(r?.cached_tokens ?? 0),
    cost_cny: Number(r?.cost_nano ?? 0) / 1e9,
    estimated: Number(r?.estimated ?? 0),
    errors: Number(r?.errors ?? 0),
    incomplete: Number(r?.incomplete ?? 0),
  };
}

export function isError(r: Pick<UsageRecord, "status" | "ended">): boolean {
  return r.status >= 400 || r.ended === "upstream_error";
}

export function isIncomplete(r: Pick<UsageRecord, "ended">): boolean {
  return (
    r.ended === "client_abort" ||
    r.ended === "upstream_break" ||
    r.ended === "timeout" ||
    r.ended === "client_stalled" ||
    r.ended === "slot_lost"
  );
}

export class Ledger {
  constructor(private readonly sql: SqlStorage) {
    sql.exec(`
      CREATE TABLE IF NOT EXISTS usage_requests (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, request_id TEXT NOT NULL, ts INTEGER NOT NULL,
        model TEXT NOT NULL,
        kind TEXT NOT NULL, stream INTEGER NOT NULL, status INTEGER NOT NULL, ended TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
        cost_nano INTEGER NOT NULL, estimated INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS usage_requests_ts ON usage_requests (ts);
      CREATE TABLE IF NOT EXISTS usage_daily (
        day TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, cost_nano INTEGER NOT NULL,
        estimated INTEGER NOT NULL, errors INTEGER NOT NULL, incomplete INTEGER NOT NULL, PRIMARY KEY (day, model));
      CREATE TABLE IF NOT EXISTS usage_last (one INTEGER PRIMARY KEY CHECK (one = 1), ts INTEGER NOT NULL);
    `);
    // Columns added with the upstream pool; rows written before it went to the single account "default".
    const columns = new Set(
      sql
        .exec<{ name: string }>("SELECT name FROM pragma_table_info('usage_requests')")
        .toArray()
        .map((r) => r.name),
    );
    if (!columns.has("account"))
      sql.exec("ALTER TABLE usage_requests ADD COLUMN account TEXT NOT NULL DEFAULT 'default'");
    if (!columns.has("attempt")) sql.exec("ALTER TABLE usage_requests ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1");
  }

  /** Returns false when a record with this id exists already (a retried release). */
  record(r: UsageRecord): boolean {
    const inserted = this.sql.exec(
      `INSERT OR IGNORE INTO usage_requests (id, request_id, ts, model, kind, stream, status, ended, prompt_tokens,
        completion_tokens, cached_tokens, cost_nano, estimated, account, attempt)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      r.id,
      r.request_id,
      r.ts,
      r.model,
      r.kind,
      r.stream ? 1 : 0,
      r.status,
      r.ended,
      r.prompt_tokens,
      r.completion_tokens,
      r.cached_tokens,
      r.cost_nano,
      r.estimated ? 1 : 0,
      r.account ?? "default",
      r.attempt ?? 1,
    ).rowsWritten;
    if (inserted === 0) return false;
    this.sql.exec(
      `INSERT INTO usage_daily VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (day, model) DO UPDATE SET requests = requests + 1,
         prompt_tokens = prompt_tokens + excluded.prompt_tokens,
         completion_tokens = completion_tokens + excluded.completion_tokens,
         cached_tokens = cached_tokens + excluded.cached_tokens, cost_nano = cost_nano + excluded.cost_nano,
         estimated = estimated + excluded.estimated, errors = errors + excluded.errors,
         incomplete = incomplete + excluded.incomplete`,
      utcDay(r.ts),
      r.model,
      r.prompt_tokens,
      r.completion_tokens,
      r.cached_tokens,
      r.cost_nano,
      r.estimated ? 1 : 0,
      isError(r) ? 1 : 0,
      isIncomplete(r) ? 1 : 0,
    );
    // Kept apart from the per-request rows, which are pruned after 8 days.
    this.sql.exec(
      "INSERT INTO usage_last VALUES (1, ?) ON CONFLICT (one) DO UPDATE SET ts = MAX(ts, excluded.ts)",
      r.ts,
    );
    return true;
  }

  /** When the key last made a request that reached upstream (ms), or null when it never did. */
  lastUsed(): number | null {
    // Records written before usage_last existed: the newest per-request row still knows.
    const r = this.sql
      .exec<{ ts: number | null }>(
        "SELECT COALESCE((SELECT ts FROM usage_last), (SELECT MAX(ts) FROM usage_requests)) AS ts",
      )
      .one();
    return r.ts;
  }

  /** Today's spend, for budgets. */
  day(day: string): { cost_nano: number; tokens: number } {
    const r = this.sql
      .exec<{ c: number | null; t: number | null }>(
        "SELECT SUM(cost_nano) AS c, SUM(prompt_tokens + completion_tokens) AS t FROM usage_daily WHERE day = ?",
        day,
      )
      .one();
    return { cost_nano: r.c ?? 0, tokens: r.t ?? 0 };
  }

  report(from: string, to: string): UsageReport {
    const where = "WHERE day >= ? AND day <= ?";
    const all = this.sql.exec<Row>(`SELECT ${SUMS} FROM usage_daily ${where}`, from, to).toArray()[0];
    const byDay = this.sql
      .exec<Row & { day: string }>(`SELECT day, ${SUMS} FROM usage_daily ${where} GROUP BY day ORDER BY day`, from, to)
      .toArray();
    const byModel = this.sql
      .exec<Row & { model: string }>(
        `SELECT model, ${SUMS} FROM usage_daily ${where} GROUP BY model ORDER BY model`,
        from,
        to,
      )
      .toArray();
    return {
      totals: totals(all),
      by_day: byDay.map((r) => ({ day: r.day, ...totals(r) })),
      by_model: byModel.map((r) => ({ model: r.model, ...totals(r) })),
    };
  }

  /** Totals per day and model, ordered by day then model. */
  rows(from: string, to: string): UsageRow[] {
    return this.sql
      .exec<Row & { day: string; model: string }>(
        `SELECT day, model, ${SUMS} FROM usage_daily WHERE day >= ? AND day <= ? GROUP BY day, model ORDER BY day, ` +
          `model`,
        from,
        to,
      )
      .toArray()
      .map((r) => ({ day: r.day, model: r.model, ...totals(r) }));
  }

  /** Most recent per-request records, newest first. */
  recent(limit: number): UsageRecord[] {
    return this.sql
      .exec<Record<string, SqlStorageValue>>(
        "SELECT * FROM usage_requests ORDER BY seq DESC LIMIT ?",
        Math.max(1, Math.min(limit, 1000)),
      )
      .toArray()
      .map((r) => ({
        id: String(r["id"]),
        request_id: String(r["request_id"]),
        ts: Number(r["ts"]),
        model: String(r["model"]),
        kind: String(r["kind"]) as UsageRecord["kind"],
        stream: r["stream"] === 1,
        status: Number(r["status"]),
        ended: String(r["ended"]) as Ending,
        prompt_tokens: Number(r["prompt_tokens"]),
        completion_tokens: Number(r["completion_tokens"]),
        cached_tokens: Number(r["cached_tokens"]),
        cost_nano: Number(r["cost_nano"]),
        estimated: r["estimated"] === 1,
        account: String(r["account"]),
        attempt: Number(r["attempt"]),
      }));
  }

  prune(now: number): void {
    this.sql.exec("DELETE FROM usage_requests WHERE ts < ?", now - REQUEST_KEEP_MS);
    this.sql.exec("DELETE FROM usage_daily WHERE day < ?", utcDay(now - DAILY_KEEP_DAYS * 86_400_000));
  }
}
