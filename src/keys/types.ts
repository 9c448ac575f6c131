// Gateway keys: what is stored, what the admin API shows, and what a request learns about its caller.
import type { Tier } from "../config.ts";

export interface KeySettings {
  name: string;
  tier: Tier;
  max_concurrency: number | null;
  daily_budget_cny: number | null;
  daily_token_limit: number | null;
  /** Models tried in order when the requested one fails for good before its first byte (admin-set). */
  fallback_models: string[] | null;
  /** URL prefixes an async job's callback_url must start with; null: any URL the callback policy allows. */
  webhook_urls: string[] | null;
  /**
   * The fraction (0 < x ≤ 1) of an upstream account's limit for a model this key may hold while other keys
   * wait for that account and model; null or absent (keys made before it existed): no cap. Alone, the key
   * may use all free capacity.
   */
  max_upstream_share?: number | null;
}

/** Stored in the key's Durable Object. The secret only as a hash and, for GLM's JWT form, sealed. */
export interface KeyRecord extends KeySettings {
  id: string;
  created_at: string;
  updated_at: string;
  revoked_at: string | null;
  secret_hash: string;
  secret_sealed: string;
  webhook_secret_sealed: string;
  /** Browser tokens issued at or before this time (seconds) are refused: "revoke all tokens of the key". */
  tokens_valid_after?: number | null;
}

/** What the admin API shows: never a secret; every setting, null when unset. */
export type PublicKey = Omit<KeyRecord, "secret_hash" | "secret_sealed" | "webhook_secret_sealed" | "max_upstream_share"> & {
  max_upstream_share: number | null;
};

/** A key as the operator console sees it (GET /admin/load). */
export interface KeyStatus extends PublicKey {
  in_flight: Record<string, number>;
  /** The last request that reached upstream. */
  last_used_at: string | null;
  /** Spent since UTC midnight, as the budget check counts it. */
  today: { cost_cny: number; tokens: number };
}

/** What the routes learn about an authenticated caller. */
export interface Caller extends KeySettings {
  id: string;
  /** Set when the caller used a browser token: its restrictions. */
  token?: { models: string[] | null; origin: string | null; exp: number; iat: number };
}

export function toPublic(r: KeyRecord): PublicKey {
  const { secret_hash: _h, secret_sealed: _s, webhook_secret_sealed: _w, ...pub } = r;
  // Keys created before these settings existed have no such fields.
  return { ...pub, fallback_models: r.fallback_models ?? null, webhook_urls: r.webhook_urls ?? null, max_upstream_share: r.max_upstream_share ?? null };
}

export function toCaller(r: KeyRecord): Caller {
  return {
    id: r.id,
    name: r.name,
    tier: r.tier,
    max_concurrency: r.max_concurrency,
    daily_budget_cny: r.daily_budget_cny,
    daily_token_limit: r.daily_token_limit,
    fallback_models: r.fallback_models ?? null,
    webhook_urls: r.webhook_urls ?? null,
    max_upstream_share: r.max_upstream_share ?? null,
  };
}
