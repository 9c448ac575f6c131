// The Worker's configuration: every variable read through one zod schema, once per env object, so a bad
// value or a missing secret becomes a clear error naming it, never a silent default.
import * as z from "./shared/zod.ts";
import { GatewayError } from "./errors.ts";
import { once } from "./lazy.ts";

export const TIERS = ["V0", "V1", "V2", "V3"] as const;
export type Tier = (typeof TIERS)[number];

/**
 * Upstream calls one summary may plan when SUMMARIZE_MAX_UPSTREAM_CALLS is not set (src/summarize/planner.ts says why).
 */
export const DEFAULT_MAX_UPSTREAM_CALLS = 150;
/**
 * Jobs one key may have queued or running when ASYNC_MAX_ACTIVE_JOBS is not set: enough for any batch a
 * client sends at once, small enough that one key cannot fill the queue for everyone (jobs run at the
 * key's own in-flight limit anyway, so more queued jobs only wait longer).
 */
export const DEFAULT_MAX_ACTIVE_JOBS = 100;

const DEFAULT_BASE_URL = "https://open.bigmodel.cn/api/paas/v4";

/** An unset or blank variable takes its default; anything else must be valid. */
const blankIsUnset = (v: unknown) => (typeof v === "string" && v.trim() === "" ? undefined : v);
const wholeNumber = (fallback: number) =>
  z.preprocess(
    blankIsUnset,
    z.coerce
      .number({ error: "expected a positive whole number" })
      .int("expected a positive whole number")
      .positive("expected a positive whole number")
      .default(fallback),
  );
const seconds = (fallback: number) =>
  z.preprocess(
    blankIsUnset,
    z.coerce
      .number({ error: "expected a positive number of seconds" })
      .positive("expected a positive number of seconds")
      .finite()
      .default(fallback),
  );

/**
 * GLM_UPSTREAMS: the accounts, as the operator writes them. Ids name guard objects and ledger rows. Built on
 * first use, like every schema here: an isolate's startup should build none.
 */
const upstreamsSchema = once(() =>
  z
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
    .refine((a) => new Set(a.map((x) => x.id)).size === a.length, "account ids must be unique"),
);

/**
 * The Worker's variables (wrangler.toml [vars], secrets, --var), all of them strings: the one schema they are
 * read through. The secrets needed only by some routes (GLM_API_KEY, ADMIN_TOKEN, KEY_ENCRYPTION_SECRET) are
 * checked where they are used (requireSecret), and GLM_UPSTREAMS when a call needs an account.
 */
const envSchema = once(() =>
  z.object({
    GLM_BASE_URL: z.preprocess(
      blankIsUnset,
      z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }).default(DEFAULT_BASE_URL),
    ),
    GLM_ACCOUNT_TIER: z.preprocess(
      blankIsUnset,
      z.enum(TIERS, { error: `expected one of ${TIERS.join(", ")}` }).default("V0"),
    ),
    GLM_API_KEY: z.string().optional(),
    GLM_UPSTREAMS: z.string().optional(),
    CORS_ORIGINS: z.preprocess(blankIsUnset, z.string().default("*")),
    UPSTREAM_TIMEOUT_MS: wholeNumber(60_000),
    UPSTREAM_MAX_ATTEMPTS: wholeNumber(3),
    /** Defaults to twice UPSTREAM_TIMEOUT_MS. */
    UPSTREAM_DEADLINE_MS: z.preprocess(
      blankIsUnset,
      z.coerce
        .number({ error: "expected a positive whole number" })
        .int("expected a positive whole number")
        .positive("expected a positive whole number")
        .optional(),
    ),
    UPSTREAM_CIRCUIT_FAILURES: wholeNumber(3),
    UPSTREAM_CIRCUIT_COOLDOWN_MS: wholeNumber(30_000),
    UPSTREAM_GUARD_SHARD_SLOTS: wholeNumber(500),
    WEBHOOK_ALLOW_PRIVATE: z.preprocess(
      (v) => (typeof v === "string" ? blankIsUnset(v.trim().toLowerCase()) : v),
      z.enum(["true", "false"], { error: "expected true or false" }).default("false"),
    ),
    WEBHOOK_RETRY_BASE_SECONDS: seconds(30),
    JOB_RETRY_BASE_SECONDS: seconds(5),
    ASYNC_MAX_ACTIVE_JOBS: wholeNumber(DEFAULT_MAX_ACTIVE_JOBS),
    SUMMARIZE_MAX_UPSTREAM_CALLS: wholeNumber(DEFAULT_MAX_UPSTREAM_CALLS),
    /** 0 flushes in the call that records (tests and local development). */
    USAGE_ROLLUP_FLUSH_MS: z.preprocess(
      blankIsUnset,
      z.coerce
        .number({ error: "expected a whole number of milliseconds" })
        .int("expected a whole number of milliseconds")
        .min(0, "expected a whole number of milliseconds")
        .default(60_000),
    ),
  }),
);

type EnvVars = z.infer<ReturnType<typeof envSchema>>;

/** One upstream GLM account. `key` is a secret: it goes into the Authorization header and nowhere else. */
export interface Account {
  id: string;
  key: string;
  tier: Tier;
  baseUrl: string;
  weight: number;
}

function parseAccounts(vars: EnvVars, fallbackBaseUrl: string): Account[] | { error: string } {
  const raw = vars.GLM_UPSTREAMS;
  if (raw === undefined || raw.trim() === "") {
    const key = vars.GLM_API_KEY;
    if (key === undefined || key === "") {
      return {
        error: "GLM_API_KEY is not set (wrangler secret put GLM_API_KEY, or .dev.vars locally), nor GLM_UPSTREAMS",
      };
    }
    return [{ id: "default", key, tier: vars.GLM_ACCOUNT_TIER, baseUrl: fallbackBaseUrl, weight: 1 }];
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    // JSON.parse's own message quotes the text, which holds keys: never repeat it.
    return { error: "GLM_UPSTREAMS is not valid JSON" };
  }
  const got = upstreamsSchema().safeParse(json);
  // Zod's messages name what was expected, never the value given, so a bad key is not echoed back.
  if (!got.success)
    return { error: `GLM_UPSTREAMS${issuePath(got.error.issues[0]!.path)}: ${got.error.issues[0]!.message}` };
  return got.data.map((a) => ({
    id: a.id,
    key: a.key,
    tier: a.tier,
    baseUrl: (a.base_url ?? fallbackBaseUrl).replace(/\/+$/, ""),
    weight: a.weight ?? 1,
  }));
}

function issuePath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("");
}

function toConfig(vars: EnvVars) {
  const baseUrl = vars.GLM_BASE_URL.replace(/\/+$/, "");
  const origins = vars.CORS_ORIGINS.trim();
  return {
    baseUrl,
    accountTier: vars.GLM_ACCOUNT_TIER,
    corsOrigins:
      origins === "*"
        ? ("*" as const)
        : origins
            .split(",")
            .map((o) => o.trim())
            .filter(Boolean),
    /** Time allowed for the upstream to send response headers, and the longest silence mid-stream. */
    upstreamTimeoutMs: vars.UPSTREAM_TIMEOUT_MS,
    /** Upstream attempts per model before a request fails (or falls back to its next model). */
    maxAttempts: vars.UPSTREAM_MAX_ATTEMPTS,
    /** The longest a request may spend before GLM's first byte, over all its attempts and backoffs. */
    deadlineMs: vars.UPSTREAM_DEADLINE_MS ?? 2 * vars.UPSTREAM_TIMEOUT_MS,
    /** Consecutive failures that open an account's circuit, and how long it then stays open. */
    circuitFailures: vars.UPSTREAM_CIRCUIT_FAILURES,
    circuitCooldownMs: vars.UPSTREAM_CIRCUIT_COOLDOWN_MS,
    /** An (account, model) limit above this is split over several guard objects (see README, capacity). */
    guardShardSlots: vars.UPSTREAM_GUARD_SHARD_SLOTS,
    /** WEBHOOK_ALLOW_PRIVATE=true: http and loopback/private callback targets (development and tests). */
    webhookAllowPrivate: vars.WEBHOOK_ALLOW_PRIVATE === "true",
    /** First retry delay of a webhook, and of a job after a transient upstream failure. */
    webhookRetryBaseS: vars.WEBHOOK_RETRY_BASE_SECONDS,
    jobRetryBaseS: vars.JOB_RETRY_BASE_SECONDS,
    /** Jobs one key may have queued or running at once. */
    maxActiveJobs: vars.ASYNC_MAX_ACTIVE_JOBS,
    /** Upstream calls one summary may plan. */
    summarizeMaxUpstreamCalls: vars.SUMMARIZE_MAX_UPSTREAM_CALLS,
    /** How long a key's changed usage rows may wait before they are sent to the per-month roll-up. */
    rollupFlushMs: vars.USAGE_ROLLUP_FLUSH_MS,
    /** The GLM accounts, or why the configuration of them is unusable (answered as a 503 when a call needs one). */
    accounts: parseAccounts(vars, baseUrl),
  };
}

export type GatewayConfig = ReturnType<typeof toConfig>;

/** The upstream accounts; a 503 naming the faulty setting (never a key) when they are not usable. */
export function readAccounts(env: Env): Account[] {
  const accounts = readConfig(env).accounts;
  if ("error" in accounts) throw new GatewayError(503, "503", `gateway misconfigured: ${accounts.error}`);
  return accounts;
}

const parsed = new WeakMap<Env, GatewayConfig | GatewayError>();

/**
 * The configuration, parsed once per env object (one per isolate in production; tests that override bindings
 * pass their own). A variable with a bad value makes every call that needs the configuration answer 503
 * naming it (never its value, which may be a secret) instead of running on a silent default.
 */
export function readConfig(env: Env): GatewayConfig {
  let cfg = parsed.get(env);
  if (!cfg) {
    const got = envSchema().safeParse(env);
    if (got.success) cfg = toConfig(got.data);
    else {
      const issue = got.error.issues[0]!;
      cfg = new GatewayError(503, "503", `gateway misconfigured: ${String(issue.path[0])}: ${issue.message}`);
    }
    parsed.set(env, cfg);
  }
  if (cfg instanceof GatewayError) throw cfg;
  return cfg;
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
