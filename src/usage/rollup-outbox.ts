// The key's side of the usage roll-up (src/usage/rollup.ts): which of its (day, model) rows changed since
// they were last sent, when they are due, and the flush that sends their absolute totals, one call per
// month touched. Marked in the same synchronous step that records the usage, so no change is missed; a
// mark is cleared only when the roll-up has stored that version of the row.
import type { ExactRow } from "./rollup.ts";
import { EXACT_COLUMNS, monthOf } from "./rollup.ts";

export type SendMonth = (month: string, rows: ExactRow[]) => Promise<unknown>;

export class RollupOutbox {
  constructor(private readonly sql: SqlStorage) {
    const existed =
      sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'usage_rollup_dirty'").one().n > 0;
    // v counts the changes to a row since it was marked; since: when its first unsent change happened.
    sql.exec(
      "CREATE TABLE IF NOT EXISTS usage_rollup_dirty (day TEXT NOT NULL, model TEXT NOT NULL, v INTEGER NOT NULL, " +
        "since INTEGER NOT NULL, PRIMARY KEY (day, model))",
    );
    // A key whose ledger predates the roll-up sends all of it once.
    if (!existed) sql.exec("INSERT OR IGNORE INTO usage_rollup_dirty SELECT day, model, 1, 0 FROM usage_daily");
  }

  mark(day: string, model: string, now: number): void {
    this.sql.exec(
      "INSERT INTO usage_rollup_dirty VALUES (?, ?, 1, ?) ON CONFLICT (day, model) DO UPDATE SET v = v + 1",
      day,
      model,
      now,
    );
  }

  /** Marks every row from `fromDay` on (a renamed key sends its name with them). */
  markSince(fromDay: string, now: number): void {
    this.sql.exec(
      `INSERT INTO usage_rollup_dirty SELECT day, model, 1, ? FROM usage_daily WHERE day >= ?
       ON CONFLICT (day, model) DO UPDATE SET v = v + 1`,
      now,
      fromDay,
    );
  }

  /** When the oldest unsent change is due to be sent, or null when nothing is waiting. */
  dueAt(delayMs: number): number | null {
    const t = this.sql.exec<{ t: number | null }>("SELECT MIN(since) AS t FROM usage_rollup_dirty").one().t;
    return t === null ? null : t + delayMs;
  }

  /**
   * Sends every marked row's absolute totals, grouped by month, and clears the marks of the rows whose
   * version was sent. A month whose send fails keeps its marks (the caller retries later); rows marked again
   * while a send was under way stay marked. Returns the number of rows the roll-up acknowledged.
   */
  async flush(send: SendMonth): Promise<number> {
    const marked = this.sql
      .exec<Record<string, SqlStorageValue>>(
        `SELECT d.day AS day, d.model AS model, d.v AS v, ${EXACT_COLUMNS.map((c) => `u.${c} AS ${c}`).join(", ")}
         FROM usage_rollup_dirty d JOIN usage_daily u USING (day, model)`,
      )
      .toArray();
    // A mark whose row was pruned meanwhile has nothing left to send.
    this.sql.exec("DELETE FROM usage_rollup_dirty WHERE (day, model) NOT IN (SELECT day, model FROM usage_daily)");
    const byMonth = new Map<string, { row: ExactRow; v: number }[]>();
    for (const r of marked) {
      const row = { day: String(r["day"]), model: String(r["model"]) } as ExactRow;
      for (const c of EXACT_COLUMNS) row[c] = Number(r[c]);
      const list = byMonth.get(monthOf(row.day)) ?? [];
      list.push({ row, v: Number(r["v"]) });
      byMonth.set(monthOf(row.day), list);
    }
    let sent = 0;
    const results = await Promise.allSettled(
      [...byMonth].map(async ([month, list]) => {
        await send(
          month,
          list.map((x) => x.row),
        );
        for (const { row, v } of list) {
          this.sql.exec("DELETE FROM usage_rollup_dirty WHERE day = ? AND model = ? AND v = ?", row.day, row.model, v);
        }
        sent += list.length;
      }),
    );
    // What is still marked (a failed month, a row changed while its send was under way) is due one delay on.
    this.sql.exec("UPDATE usage_rollup_dirty SET since = ?", Date.now());
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return sent;
  }
}
