// Spend: cost and tokens per day for the last 30 days stacked by model (all keys or one), totals for
// today, the month and the 30 days, the day's budget use per key, and the CSV export.
import { h } from "../lib/dom.js";
import { compact, spent } from "../lib/format.js";
import { stackedBars } from "./charts.js";
import { gauge } from "./ui.js";

const DAY_MS = 86_400_000;
const utcDay = (ms) => new Date(ms).toISOString().slice(0, 10);

/** The last 30 UTC days, and the range to ask for so the month so far is covered too. */
export function spendRange(now = Date.now()) {
  const today = utcDay(now);
  const days = Array.from({ length: 30 }, (_, i) => utcDay(now - (29 - i) * DAY_MS));
  const monthStart = `${today.slice(0, 8)}01`;
  return { days, today, monthStart, from: monthStart < days[0] ? monthStart : days[0], to: today };
}

const tokensOf = (r) => r.prompt_tokens + r.completion_tokens;

/** Per-model series over the days (models with the most spend at the bottom). */
function seriesOf(rows, days, value) {
  const byModel = new Map();
  for (const r of rows) {
    const i = days.indexOf(r.day);
    if (i < 0) continue;
    if (!byModel.has(r.model)) byModel.set(r.model, new Array(days.length).fill(0));
    byModel.get(r.model)[i] += value(r);
  }
  const sum = (vs) => vs.reduce((a, b) => a + b, 0);
  return [...byModel.entries()]
    .sort((a, b) => sum(b[1]) - sum(a[1]) || a[0].localeCompare(b[0]))
    .map(([label, values]) => ({ label, values }));
}

function total(label, value, testid) {
  return h(
    "div",
    { class: "total card" },
    h("span", { class: "muted" }, label),
    h("b", { "data-testid": testid }, value),
  );
}

export function renderSpend({ report, range, totalsRoot, costFigure, tokensFigure }) {
  const rows = report.by_day_model;
  const sumWhere = (pred, value) => rows.filter(pred).reduce((a, r) => a + value(r), 0);
  const inDays = (r) => r.day >= range.days[0];
  const today = (r) => r.day === range.today;
  const month = (r) => r.day >= range.monthStart;
  const cost = (r) => r.cost_cny;
  totalsRoot.replaceChildren(
    total("Today", spent(sumWhere(today, cost)), "spend-today-cost"),
    total("Tokens today", compact(sumWhere(today, tokensOf)), "spend-today-tokens"),
    total("This month", spent(sumWhere(month, cost)), "spend-month-cost"),
    total("Tokens this month", compact(sumWhere(month, tokensOf)), "spend-month-tokens"),
    total("Last 30 days", spent(sumWhere(inDays, cost)), "spend-30d-cost"),
  );
  const costSeries = seriesOf(rows, range.days, cost);
  const tokenSeries = seriesOf(rows, range.days, tokensOf);
  const axisMoney = (v) => (v === 0 ? "¥0" : spent(v));
  stackedBars(costFigure, {
    days: range.days,
    series: costSeries,
    format: axisMoney,
    summary: `Cost per day by model over the last 30 days: ${spent(sumWhere(inDays, cost))} in all, ${spent(sumWhere(today, cost))} today`,
  });
  stackedBars(tokensFigure, {
    days: range.days,
    series: tokenSeries,
    format: compact,
    summary: `Tokens per day by model over the last 30 days: ${compact(sumWhere(inDays, tokensOf))} in all, ${compact(sumWhere(today, tokensOf))} today`,
  });
}

/** Today's use of each key's daily budget and token limit. */
export function renderBudgets(root, keys) {
  const active = keys.filter((k) => !k.revoked_at);
  if (active.length === 0) {
    root.replaceChildren(h("p", { class: "empty-note" }, "No active keys."));
    return;
  }
  root.replaceChildren(
    ...active.map((k) => {
      const bars = [];
      if (k.daily_budget_cny !== null) {
        bars.push(
          budgetBar(
            `${spent(k.today.cost_cny)} of ¥${k.daily_budget_cny}`,
            k.today.cost_cny,
            k.daily_budget_cny,
            `${k.name}: budget used today`,
          ),
        );
      }
      if (k.daily_token_limit !== null) {
        bars.push(
          budgetBar(
            `${compact(k.today.tokens)} of ${compact(k.daily_token_limit)} tokens`,
            k.today.tokens,
            k.daily_token_limit,
            `${k.name}: tokens used today`,
          ),
        );
      }
      if (bars.length === 0)
        bars.push(
          h(
            "p",
            { class: "muted" },
            `no daily budget · ${spent(k.today.cost_cny)} and ${compact(k.today.tokens)} tokens today`,
          ),
        );
      return h("div", { class: "budget card", "data-testid": `budget-${k.id}` }, h("b", {}, k.name), ...bars);
    }),
  );
}

function budgetBar(text, used, limit, label) {
  // The gauge works in whole percent, so tiny budgets still show their share.
  const pct = limit > 0 ? Math.min(100, Math.round((used / limit) * 100)) : 100;
  const g = gauge(pct, 100, label);
  g.querySelector(".gauge-text").textContent = `${pct}%`;
  return h("div", { class: "gauge-row" }, h("span", { class: "gauge-label" }, text), g);
}
