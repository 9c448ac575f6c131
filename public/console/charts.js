// Stacked bar charts per day with uPlot (vendored from npm into /vendor/uplot/). uPlot does not stack by
// itself: each model's series holds the running total up to it, and the tallest is drawn first so the
// visible part of each bar is that model's share. The legend and tooltip show each model's own value.
import uPlot from "/vendor/uplot/uPlot.esm.js";

/* global getComputedStyle, ResizeObserver */

const PALETTE = ["#5457f0", "#12b5a5", "#e8833a", "#d4334a", "#8e5bd9", "#2f8fdb", "#b7950b", "#6b7280"];

export function modelColor(i) {
  return PALETTE[i % PALETTE.length];
}

const charts = new Map();

/**
 * Draws (or redraws) a stacked bar chart into figure's .chart-plot.
 * days: ["2026-11-01", …]; series: [{ label, values: number[] }] bottom to top; format(value) → text.
 * Leaves on the figure what the bar of the last day looks like: data-today (its total) and, once drawn,
 * data-today-x / data-today-y (the middle of that bar in canvas pixels).
 */
export function stackedBars(figure, { days, series, format, summary }) {
  const plot = figure.querySelector(".chart-plot");
  charts.get(figure)?.destroy();
  const n = days.length;
  const running = [];
  let acc = new Array(n).fill(0);
  for (const s of series) {
    acc = acc.map((a, i) => a + s.values[i]);
    running.push(acc);
  }
  const top = series.map((_, i) => i).reverse();
  const totals = acc;
  const css = getComputedStyle(document.documentElement);
  const muted = css.getPropertyValue("--fg-muted").trim();
  const grid = css.getPropertyValue("--border").trim();
  const opts = {
    width: Math.max(240, plot.clientWidth),
    height: 220,
    scales: {
      x: { time: false, range: [-0.6, n - 0.4] },
      y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.08 : 1] },
    },
    axes: [
      {
        stroke: muted,
        grid: { show: false },
        ticks: { stroke: grid },
        space: 44,
        values: (_u, splits) => splits.map((i) => (Number.isInteger(i) && days[i] ? days[i].slice(5) : "")),
      },
      {
        stroke: muted,
        grid: { stroke: grid, width: 1 },
        ticks: { stroke: grid },
        size: 84,
        values: (_u, splits) => splits.map((v) => format(v)),
      },
    ],
    series: [
      { label: "Day", value: (_u, i) => (i === null || i === undefined ? "—" : (days[Math.round(i)] ?? "—")) },
      ...top.map((i) => ({
        label: series[i].label,
        stroke: modelColor(i),
        fill: modelColor(i),
        width: 0,
        points: { show: false },
        paths: uPlot.paths.bars({ size: [0.7, 48], gap: 1 }),
        value: (_u, _v, _si, idx) => (idx === null || idx === undefined ? "—" : format(series[i].values[idx])),
      })),
    ],
    cursor: { points: { show: false }, drag: { x: false, y: false } },
    legend: { show: series.length > 0 },
    hooks: {
      draw: [
        (u) => {
          const last = n - 1;
          figure.dataset.todayX = String(Math.round(u.valToPos(last, "x", true)));
          figure.dataset.todayY = String(Math.round(u.valToPos(totals[last] / 2, "y", true)));
        },
      ],
    },
  };
  figure.dataset.today = String(totals[n - 1] ?? 0);
  delete figure.dataset.todayX;
  delete figure.dataset.todayY;
  figure.setAttribute("aria-label", summary);
  plot.replaceChildren();
  const chart = new uPlot(opts, [days.map((_, i) => i), ...top.map((i) => running[i])], plot);
  charts.set(figure, chart);
  if (!figure.dataset.observed) {
    figure.dataset.observed = "true";
    new ResizeObserver(() => {
      const c = charts.get(figure);
      if (c && plot.clientWidth > 0 && Math.abs(c.width - plot.clientWidth) > 1)
        c.setSize({ width: Math.max(240, plot.clientWidth), height: 220 });
    }).observe(plot);
  }
  return chart;
}
