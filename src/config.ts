// Typed view of the Worker's configuration, parsed once per env object (one per isolate in production;
// tests that override bindings pass their own), and checked here, so a missing secret becomes a clear
// error naming it.
import * as z from "./shared/zod.ts";
import { GatewayError } from "./errors.ts";

export const TIERS = ["V0", "V1", "V2", "V3"] as const;
export type Tier = (typeof TIERS)[number];

export function isTier(v: unknown): v is Tier {
  return typeof v === "string" && (TIERS as readonly string[]).includes(v);
}

export interface GatewayConfig {
  baseUrl: string;
  accountTier: Tier;
  corsOrigins: string[] | "*";
  /** Time allowed for the upstream to send response headers, and the longest silence mid-stream. */
  upstreamTimeoutMs: number;
  /** Upstream attempts per model before a request fails (or falls back to its next model). */
  maxAttempts: number;
  /** The longest a request may spend before GLM's first byte, over all its attempts and backoffs. */
  deadlineMs: number;
  /** Consecutive failures that open an account's circuit, and how long it then stays open. */
  circuitFailures: number;
  circuitCooldownMs: number;
  /** An (account, model) limit above this is split over several guard objects (see README, capacity). */
  guardShardSlots: number;
  /** The GLM accounts, or why the configuration of them is unusable (answered as a 503 when a call needs one). */
  accounts: Account[] | { error: string };
}

/** One upstream GLM account. `key` is a secret: it goes into the Authorization header and nowhere else. */
export interface Account {
  id: string;
  key: string;
  tier: Tier;
  baseUrl: string;
  weight: number;
}

function intVar(env: Env, name: keyof Env, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : fallback;
}

const DEFAULT_BASE_URL = "https://open.bigmodel.cn/api/paas/v4";

/** GLM_UPSTREAMS: the accounts, as the operator writes them. Ids name guard objects and ledger rows. */
const UpstreamsSchema = z
  .array(
    z
      .object({
        id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/, "letters, digits, _ and -, at most 32"),
        key: z.string().regex(/^\S+\.\S+$/, "a GLM key <id>.<secret>"),
        tier: z.enum(TIERS),
        base_url: z.url({ protocol: /^https?$/ }).optional(),
        weight: z.number().positive().finite().optional(),
      })
      .strict(),
  )
  .min(1)
  .max(32)
  .refine((a) => new Set(a.map((x) => x.id)).size === a.length, "account ids must be unique");

function parseAccounts(env: Env, fallbackBaseUrl: string): Account[] | { error: string } {
  const raw = (env as { GLM_UPSTREAMS?: string }).GLM_UPSTREAMS;
  if (raw === undefined || raw.trim() === "") {
    const key = env.GLM_API_KEY;
    if (typeof key !== "string" || key === "") {
      return { error: "GLM_API_KEY is not set (wrangler secret put GLM_API_KEY, or .dev.vars locally), nor GLM_UPSTREAMS" };
    }
    return [{ id: "default", key, tier: isTier(env.GLM_ACCOUNT_TIER) ? env.GLM_ACCOUNT_TIER : "V0", baseUrl: fallbackBaseUrl, weight: 1 }];
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    // JSON.parse's own message quotes the text, which holds keys: never repeat it.
    return { error: "GLM_UPSTREAMS is not valid JSON" };
  }
  const got = UpstreamsSchema.safeParse(json);
  if (!got.success) {
    const issue = got.error.issues[0]!;
    const path = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("");
    // Zod's messages name what was expected, never the value given, so a bad key is not echoed back.
    return { error: `GLM_UPSTREAMS${path}: ${issue.message}` };
  }
  return got.data.map((a) => ({
    id: a.id, key: a.key, tier: a.tier, baseUrl: (a.base_url ?? fallbackBaseUrl).replace(/\/+$/, ""), weight: a.weight ?? 1,
  }));
}

/** The upstream accounts; a 503 naming the faulty setting (never a key) when they are not usable. */
export function readAccounts(env: Env): Account[] {
  const accounts = readConfig(env).accounts;
  if ("error" in accounts) throw new GatewayError(503, "503", `gateway misconfigured: ${accounts.error}`);
  return accounts;
}

const parsed = new WeakMap<Env, GatewayConfig>();

export function readConfig(env: Env): GatewayConfig {
  let cfg = parsed.get(env);
  if (!cfg) {
    cfg = parseConfig(env);
    parsed.set(env, cfg);
  }
  return cfg;
}

function parseConfig(env: Env): GatewayConfig {
  const origins = (env.CORS_ORIGINS ?? "*").trim();
  const baseUrl = (env.GLM_BASE_URL || DEFAULT_BASE_URL).replace(/\/+$/, "");
  const upstreamTimeoutMs = intVar(env, "UPSTREAM_TIMEOUT_MS", 60_000);
  return {
    baseUrl,
    accountTier: isTier(env.GLM_ACCOUNT_TIER) ? env.GLM_ACCOUNT_TIER : "V0",
    corsOrigins:
      origins === "*" || origins === ""
        ? "*"
        : origins
            .split(",")
            .map((o) => o.trim())
            .filter(Boolean),
    upstreamTimeoutMs,
    maxAttempts: intVar(env, "UPSTREAM_MAX_ATTEMPTS", 3),
    deadlineMs: intVar(env, "UPSTREAM_DEADLINE_MS", 2 * upstreamTimeoutMs),
    circuitFailures: intVar(env, "UPSTREAM_CIRCUIT_FAILURES", 3),
    circuitCooldownMs: intVar(env, "UPSTREAM_CIRCUIT_COOLDOWN_MS", 30_000),
    guardShardSlots: intVar(env, "UPSTREAM_GUARD_SHARD_SLOTS", 500),
    accounts: parseAccounts(env, baseUrl),
  };
}

/** A secret the gateway cannot work without: 503 naming it (never the value) when it is missing. */
export function requireSecret(env: Env, name: "GLM_API_KEY" | "ADMIN_TOKEN"): string {
  const v = env[name];
  if (typeof v !== "string" || v === "") {
    throw new GatewayError(
      503,
      "503",
      `gateway misconfigured: ${name} is not set (wrangler secret put ${name}, or .dev.vars locally)`,
    );
  }
  return v;
}

/** Key secrets are sealed at rest with this; ADMIN_TOKEN is the documented fallback for small setups. */
export function keySealingSecret(env: Env): string {
  const v = env.KEY_ENCRYPTION_SECRET;
  return typeof v === "string" && v !== "" ? v : requireSecret(env, "ADMIN_TOKEN");
}
