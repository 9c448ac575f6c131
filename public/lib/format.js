// Numbers for people: token counts, prices, costs, durations; and the cost of an answer from the model's
// catalog price (the same rule as the gateway: cached input at the cached price when one is offered).

/** 128000 → "128K", 16384 → "16K" (output limits are often powers of two), 1048576 → "1M". */
export function tokensShort(n) {
  const binary = (unit) => n % unit === 0 && n % (unit === 1024 ? 1000 : 1_000_000) !== 0;
  if (n >= 1_000_000) return `${trim(binary(1_048_576) ? n / 1_048_576 : n / 1_000_000)}M`;
  if (n >= 1_000) return `${trim(binary(1024) ? n / 1024 : n / 1_000)}K`;
  return String(n);
}

function trim(x) {
  return x >= 100 ? Math.round(x).toString() : x.toFixed(1).replace(/\.0$/, "");
}

export function count(n) {
  return new Intl.NumberFormat("en-US").format(n);
}

/** CNY per million tokens. */
export function price(perMillion) {
  if (perMillion === null || perMillion === undefined) return "—";
  if (perMillion === 0) return "free";
  return `¥${perMillion} / 1M`;
}

/** A cost in CNY, with enough digits to show fractions of a fen. */
export function cny(amount) {
  if (amount === 0) return "¥0 (free)";
  if (amount >= 1) return `¥${amount.toFixed(2)}`;
  if (amount >= 0.01) return `¥${amount.toFixed(4)}`;
  return `¥${Number(amount.toPrecision(3)).toFixed(9).replace(/0+$/, "")}`;
}

export function costOf(usage, pricing) {
  if (!usage || !pricing) return null;
  const prompt = usage.prompt_tokens ?? 0;
  const cached = Math.min(usage.prompt_tokens_details?.cached_tokens ?? 0, prompt);
  const nano =
    Math.round((prompt - cached) * pricing.input * 1000) +
    Math.round(cached * (pricing.cached_input ?? pricing.input) * 1000) +
    Math.round((usage.completion_tokens ?? 0) * pricing.output * 1000);
  return nano / 1e9;
}

export function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** "in 9 min", "in 2 h 5 min", for a future time. */
export function until(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function clockTime(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** A count for people: 950 → "950", 1234 → "1.2K", 1200000 → "1.2M" (decimal units). */
export function compact(n) {
  if (Math.abs(n) < 1000) return String(n);
  return new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(n);
}

/** Money spent: "¥0" when nothing was, else as cny(). */
export function spent(amount) {
  return amount === 0 ? "¥0" : cny(amount);
}

/** "just now", "5 min ago", "3 h ago", "12 days ago", for a past time (ISO string or ms). */
export function ago(when, now = Date.now()) {
  const s = Math.max(0, Math.round((now - new Date(when).getTime()) / 1000));
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  const d = Math.round(s / 86_400);
  return `${d} day${d === 1 ? "" : "s"} ago`;
}

/** "2026-11-30 14:05" in the viewer's time zone. */
export function dateTime(when) {
  const d = new Date(when);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
