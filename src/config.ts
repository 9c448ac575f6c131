// Typed view of the Worker's configuration, parsed once per env object (one per isolate in production;
// tests that override bindings pass their own), and checked here, so a missing secret becomes a clear
// error naming it.
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
}

function intVar(env: Env, name: keyof Env, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : fallback;
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
  return {
    baseUrl: (env.GLM_BASE_URL || "https://open.bigmodel.cn/api/paas/v4").replace(/\/+$/, ""),
    accountTier: isTier(env.GLM_ACCOUNT_TIER) ? env.GLM_ACCOUNT_TIER : "V0",
    corsOrigins:
      origins === "*" || origins === ""
        ? "*"
        : origins
            .split(",")
            .map((o) => o.trim())
            .filter(Boolean),
    upstreamTimeoutMs: intVar(env, "UPSTREAM_TIMEOUT_MS", 60_000),
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
