// GET /admin/upstreams: the upstream accounts, and per account and model the slots in flight against the
// account's tier limit (summed over the guard's shards), the failures reported lately and the circuit's
// state, read from each pool's UpstreamGuard. Upstream keys are never shown. Nothing here takes a slot.
import * as z from "../shared/zod.ts";
import { getCatalog } from "../catalog/store.ts";
import { readAccounts, readConfig, TIERS } from "../config.ts";
import { adminSecurity, commonErrors, createRoute, newRouter } from "../http/openapi.ts";
import { once } from "../lazy.ts";
import { poolStates } from "../limiter/pools.ts";
import type { CircuitState } from "../limiter/guard.ts";

const upstreamsSchema = once(() => {
  const CircuitSchema = z.object({
    state: z
      .enum(["closed", "open", "half_open"])
      .openapi({ description: "open: skipped until retry_at, then one probe request decides" }),
    consecutive_failures: z.number().int(),
    retry_at: z.string().nullable().openapi({ description: "open: when the next probe may go" }),
  });

  const UpstreamModelSchema = z.object({
    model: z.string(),
    in_flight: z.number().int().openapi({ description: "slots leased out at this account (the keys' blocks)" }),
    limit: z.number().int().openapi({ description: "the account tier's limit for the model" }),
    shards: z.number().int().openapi({ description: "guard objects the limit is split over" }),
    recent_failures: z.number().int().openapi({ description: "failed attempts reported in the last 5 minutes" }),
    last_failure_at: z.string().nullable(),
    circuit: CircuitSchema,
  });

  const UpstreamsSchema = z
    .object({
      at: z.string(),
      accounts: z.array(
        z.object({
          id: z.string(),
          tier: z.enum(TIERS),
          base_url: z.string(),
          weight: z.number(),
          models: z.array(UpstreamModelSchema),
        }),
      ),
    })
    .openapi("Upstreams");
  return UpstreamsSchema;
});

/** The worst state over a pool's shards: open if any is open, then half open. */
function worst(states: CircuitState[]): CircuitState {
  return states.includes("open") ? "open" : states.includes("half_open") ? "half_open" : "closed";
}

const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/** A base URL as shown: without any credentials an operator may have put in it. */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString().replace(/\/$/, "");
  } catch {
    return "(invalid)";
  }
}

export const adminUpstreams = newRouter();

adminUpstreams.openapi(
  createRoute({ method: "get", path: "/upstreams" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary:
      "The upstream accounts: in flight against the limit, recent failures and circuit state per model (keys never " +
      "shown)",
    responses: () => ({
      200: { description: "A snapshot (read-only)", content: { "application/json": { schema: upstreamsSchema() } } },
      ...commonErrors(),
    }),
  })),
  async (c) => {
    const accounts = readAccounts(c.env);
    const { guardShardSlots } = readConfig(c.env);
    const models = (await getCatalog(c.env, c.executionCtx)).catalog.models.filter((m) => m.status !== "disabled");
    const out = await Promise.all(
      accounts.map(async (a) => ({
        id: a.id,
        tier: a.tier,
        base_url: safeUrl(a.baseUrl),
        weight: a.weight,
        models: (await poolStates(c.env, [a], models, guardShardSlots)).map(({ model, pools, states }) => {
          const state = worst(states.map((s) => s.circuit.state));
          const retryAt = Math.min(
            ...states.filter((s) => s.circuit.state !== "closed").map((s) => s.circuit.retryAt ?? Infinity),
          );
          return {
            model: model.id,
            in_flight: states.reduce((n, s) => n + s.in_flight, 0),
            limit: pools.reduce((n, p) => n + p.limit, 0),
            shards: pools.length,
            // Every shard hears every report: the count of one is the account's.
            recent_failures: Math.max(0, ...states.map((s) => s.recent_failures)),
            last_failure_at: iso(Math.max(0, ...states.map((s) => s.last_failure_at ?? 0)) || null),
            circuit: {
              state,
              consecutive_failures: Math.max(...states.map((s) => s.circuit.consecutive)),
              retry_at: state === "closed" ? null : iso(Number.isFinite(retryAt) ? retryAt : null),
            },
          };
        }),
      })),
    );
    return c.json({ at: new Date().toISOString(), accounts: out }, 200);
  },
);
