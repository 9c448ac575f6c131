// Cost of a request in CNY from the catalog price captured when the request started. Amounts are
// integers of nano-CNY (1e-9 CNY) so sums over many records stay exact.
import type { ModelEntry } from "../catalog/schema.ts";

export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
}

export type Pricing = ModelEntry["pricing"];

/** Price per million tokens × tokens × 1000 = nano-CNY. Cached input is billed at the cached price when offered. */
export function costNano(pricing: Pricing, u: TokenUsage): number {
  const cached = Math.min(u.cached_tokens, u.prompt_tokens);
  const uncached = u.prompt_tokens - cached;
  const cachedPrice = pricing.cached_input ?? pricing.input;
  return (
    Math.round(uncached * pricing.input * 1000) +
    Math.round(cached * cachedPrice * 1000) +
    Math.round(u.completion_tokens * pricing.output * 1000)
  );
}

/** Decimal string for headers: exact to 1e-9 CNY with trailing zeros removed. */
export function formatCny(nano: number): string {
  const s = (nano / 1e9).toFixed(9);
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}
