// Gateway keys: what is stored, what the admin API shows, and what a request learns about its caller.
import type { PublicKey } from "./schema.ts";

/**
 * The settings an admin sets, as the admin API shows them (src/keys/schema.ts), except that a record stored before
 * max_upstream_share existed has none.
 */
export interface KeySettings extends Pick<
  PublicKey,
  "name" | "tier" | "max_concurrency" | "daily_budget_cny" | "daily_token_limit" | "fallback_models" | "webhook_urls"
> {
  /** Absent in keys made before it existed: no cap. */
  max_upstream_share?: number | null;
}

/**
 * Stored in the key's Durable Object: what the admin API shows plus the secret, only as a hash and, for GLM's JWT
 * form, sealed. An interface, not a schema: it never crosses the wire, and what the API shows of it is PublicKey.
 */
export interface KeyRecord
  extends KeySettings, Pick<PublicKey, "id" | "created_at" | "updated_at" | "revoked_at" | "tokens_valid_after"> {
  secret_hash: string;
  secret_sealed: string;
  webhook_secret_sealed: string;
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
  return {
    ...pub,
    fallback_models: r.fallback_models ?? null,
    webhook_urls: r.webhook_urls ?? null,
    max_upstream_share: r.max_upstream_share ?? null,
  };
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
