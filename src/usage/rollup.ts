// UsageRollup: one Durable Object per calendar month holding every key's usage per day and model, so the
// admin-wide usage view reads one object per month in its range instead of one per key. Keys' objects
// write here from their alarm (src/usage/rollup-outbox.ts), never on a request's path, and each write
// carries the row's absolute totals: writing the same row twice changes nothing, so a retried or repeated
// flush can never double-count. The rows lag the keys' own ledgers by at most the flush interval.
import { DurableObject } from "cloudflare:workers";
import type { ExactTotals } from "./ledger.ts";

/** A (day, model) row of one key with exact totals (cost in integer nano-CNY). */
export interface ExactRow extends ExactTotals {
  day: string;
  model: string;
}

export interface RollupRow extends ExactRow {
  key_id: string;
  key_name: string;
}

/** How far behind the keys' ledgers the roll-up may be, and when its newest data arrived. */
export interface RollupRead {
  rows: RollupRow[];
  /** The newest flush among the months read (ms since the epoch), or null when nothing was ever flushed. */
  flushedAt: number | null;
}

export const EXACT_COLUMNS = [
  "requests",
  "prompt_tokens",
  "completion_tokens",
  "cached_tokens",
  "cost_nano",
  "estimated",
  "errors",
  "incomplete",
] as const;

/** "2026-11" for "2026-11-30": the roll-up object a day's rows live in. */
export function monthOf(day: string): string {
  return day.slice(0, 7);
}

/** The months from `from` to `to` (YYYY-MM-DD), in order: the objects a range read asks. */
export function monthsIn(from: string, to: string): string[] {
  const out: string[] = [];
  let [y, m] = [Number(from.slice(0, 4)), Number(from.slice(5, 7))];
  const last = monthOf(to);
  for (;;) {
    const month = `${String(y).padStart(4, "0")}-${String(m).padStart(2, "0")}`;
    if (month > last) break;
    out.push(month);
    if (++m > 12) [y, m] = [y + 1, 1];
  }
  return out;
}

export function rollupStub(env: Env, month: string) {
  return env.USAGE_ROLLUP.get(env.USAGE_ROLLUP.idFromName(`usage:${month}`));
}

export class UsageRollup extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(`
      CREATE TABLE IF NOT EXISTS rollup (
        day TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
        cost_nano INTEGER NOT NULL, estimated INTEGER NOT NULL, errors INTEGER NOT NULL, incomplete INTEGER NOT NULL,
        PRIMARY KEY (day, key_id, model));
      CREATE TABLE IF NOT EXISTS key_names (key_id TEXT PRIMARY KEY, name TEXT NOT NULL, flushed_at INTEGER NOT NULL);
    `);
  }

  /**
   * Sets a key's rows to the totals given (absolute, not increments) and its name. Rows only ever grow at
   * the key, so a flush that arrives late with older totals than one already stored is ignored row by row.
   */
  put(keyId: string, name: string, rows: ExactRow[]): number {
    const now = Date.now();
    this.ctx.storage.sql.exec(
      "INSERT INTO key_names VALUES (?, ?, ?) ON CONFLICT (key_id) DO UPDATE SET name = excluded.name, flushed_at = " +
        "excluded.flushed_at",
      keyId,
      name,
      now,
    );
    for (const r of rows) {
      this.ctx.storage.sql.exec(
        `INSERT INTO rollup VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (day, key_id, model) DO UPDATE SET requests = excluded.requests,
           prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
           cached_tokens = excluded.cached_tokens, cost_nano = excluded.cost_nano, estimated = excluded.estimated,
           errors = excluded.errors, incomplete = excluded.incomplete
         WHERE excluded.requests >= rollup.requests`,
        r.day,
        keyId,
        r.model,
        r.requests,
        r.prompt_tokens,
        r.completion_tokens,
        r.cached_tokens,
        r.cost_nano,
        r.estimated,
        r.errors,
        r.incomplete,
      );
    }
    return rows.length;
  }

  /** Every key's rows for the days from `from` to `to` that fall in this month. */
  read(from: string, to: string): RollupRead {
    const rows = this.ctx.storage.sql
      .exec<Record<string, SqlStorageValue>>(
        `SELECT r.*, COALESCE(k.name, '') AS key_name FROM rollup r LEFT JOIN key_names k USING (key_id)
         WHERE r.day >= ? AND r.day <= ? ORDER BY r.day, r.key_id, r.model`,
        from,
        to,
      )
      .toArray()
      .map((r) => {
        const row = {
          day: String(r["day"]),
          key_id: String(r["key_id"]),
          key_name: String(r["key_name"]),
          model: String(r["model"]),
        } as RollupRow;
        for (const c of EXACT_COLUMNS) row[c] = Number(r[c]);
        return row;
      });
    const flushedAt = this.ctx.storage.sql
      .exec<{ t: number | null }>("SELECT MAX(flushed_at) AS t FROM key_names")
      .one().t;
    return { rows, flushedAt };
  }
}
