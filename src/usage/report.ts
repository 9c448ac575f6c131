// Usage reports summed from rows (of one key, or of every key through the roll-up): totals, per day, per
// model and per day and model. Costs are summed in nano-CNY so a total of many rows stays exact.
import type { UsageReport, UsageRow, UsageTotals } from "./schema.ts";

export const ZERO_TOTALS: Readonly<UsageTotals> = {
  requests: 0,
  prompt_tokens: 0,
  completion_tokens: 0,
  cached_tokens: 0,
  cost_cny: 0,
  estimated: 0,
  errors: 0,
  incomplete: 0,
};

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

/** Sums the rows that share a group, sorted by group; each result keeps the labels of its group's rows. */
function mergeBy<T extends UsageTotals>(rows: T[], group: (r: T) => string): T[] {
  const map = new Map<string, T>();
  for (const row of rows) {
    const k = group(row);
    const prev = map.get(k);
    map.set(k, prev ? { ...row, ...add(prev, row) } : row);
  }
  return [...map.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, v]) => v);
}

/** The usage report of all the given rows (of one key or many), plus their totals per day and model. */
export function reportOf(rows: UsageRow[]): UsageReport & { by_day_model: UsageRow[] } {
  return {
    totals: rows.reduce<UsageTotals>((t, r) => add(t, r), ZERO_TOTALS),
    by_day: mergeBy(
      rows.map(({ model: _, ...r }) => r),
      (r) => r.day,
    ),
    by_model: mergeBy(
      rows.map(({ day: _, ...r }) => r),
      (r) => r.model,
    ),
    by_day_model: mergeBy(rows, (r) => `${r.day} ${r.model}`),
  };
}
