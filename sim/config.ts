// Simulator configuration and the GLM-4 model table (context sizes and per-tier in-flight limits
// copied from the upstream reference, so gateway tests meet the same 1302 walls as production).

export type Tier = "V0" | "V1" | "V2" | "V3";
export const TIERS: readonly Tier[] = ["V0", "V1", "V2", "V3"];

/** Random faults; each rate is a probability in [0,1], drawn per request from seed + request counter. */
export type ChaosConfig = {
  seed?: number;
  errorRate?: number; // 429 code 1305 or 500 code 500, half each
  breakRate?: number; // connection reset (mid-stream for streams)
  hangRate?: number; // never answers / stops mid-stream
  slowRate?: number; // +SLOW_TTFT_MS before the first byte and SLOW_DELAY_MS between tokens
};

export type SimConfig = {
  tier: Tier;
  concurrencyOverride?: number; // in-flight limit for every model, replacing the tier table
  contextTokens?: number; // context window for every model, replacing the model table
  tokenDelayMs: number;
  ttftMs: number;
  defaultTokens: number;
  apiKey?: string; // when set, only "Bearer <apiKey>" is accepted
  chaos?: ChaosConfig;
  /**
   * Controls (the x-sim syntax, e.g. "error=1305") applied to every request without a fault of its own, or
   * only to those for `models`: one simulator playing a failing account (or a failing model) among several.
   */
  fault?: { controls: string; models?: string[] };
};

export type SimOptions = Partial<SimConfig>;

export const SLOW_TTFT_MS = 500;
export const SLOW_DELAY_MS = 50;

export const DEFAULT_CONFIG: SimConfig = { tier: "V3", tokenDelayMs: 0, ttftMs: 0, defaultTokens: 20 };

type ModelInfo = { context: number; inFlight: readonly [number, number, number, number] };

export const MODELS: Record<string, ModelInfo> = {
  "glm-4-plus": { context: 128_000, inFlight: [50, 100, 300, 500] },
  "glm-4-air-250414": { context: 128_000, inFlight: [30, 40, 50, 60] },
  "glm-4-airx": { context: 8_000, inFlight: [5, 30, 40, 50] },
  "glm-4-flashx-250414": { context: 128_000, inFlight: [100, 150, 200, 300] },
  "glm-4-flash-250414": { context: 128_000, inFlight: [200, 1000, 2000, 3000] },
  "glm-4-long": { context: 1_000_000, inFlight: [50, 50, 50, 50] },
};

// A fixed "created" for /models so the listing is byte-stable.
export const MODELS_CREATED = 1_700_000_000;

export function concurrencyLimit(model: string, config: SimConfig): number {
  if (config.concurrencyOverride !== undefined) return config.concurrencyOverride;
  return MODELS[model]!.inFlight[TIERS.indexOf(config.tier)] ?? Infinity;
}

export function contextLimit(model: string, config: SimConfig): number {
  return config.contextTokens ?? MODELS[model]!.context;
}

const isCount = (v: unknown): boolean => typeof v === "number" && Number.isFinite(v) && v >= 0;
const VALID: Record<keyof SimConfig, (v: unknown) => boolean> = {
  tier: (v) => TIERS.includes(v as Tier),
  concurrencyOverride: isCount,
  contextTokens: isCount,
  tokenDelayMs: isCount,
  ttftMs: isCount,
  defaultTokens: isCount,
  apiKey: (v) => typeof v === "string" && v !== "",
  chaos: (v) => typeof v === "object" && !Array.isArray(v),
  fault: (v) => typeof v === "object" && v !== null && typeof (v as { controls?: unknown }).controls === "string",
};

/**
 * Merge a patch into a config. A null value (possible in POSTed JSON) resets a key to its default
 * or removes an optional one, e.g. {"apiKey": null} turns key checking off again.
 * Returns an error string instead when the patch has an unknown key or a bad value.
 */
export function mergeConfig(base: SimConfig, patch: Record<string, unknown>): SimConfig | string {
  const next: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    const valid = VALID[key as keyof SimConfig];
    if (!valid) return `unknown config key: ${key}`;
    if (value === null || value === undefined) {
      if (key in DEFAULT_CONFIG) next[key] = DEFAULT_CONFIG[key as keyof SimConfig];
      else delete next[key];
    } else if (!valid(value)) return `invalid value for config key: ${key}`;
    else next[key] = value;
  }
  return next as SimConfig;
}
