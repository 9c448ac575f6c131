// GET /admin/load: a read-only snapshot for the operator console — every key with its requests in flight
// per model against its limit, its last use and today's spend, and the gateway's upstream capacity: requests
// in flight per model against the limit, summed over the upstream accounts (GET /admin/upstreams has them one
// by one). Nothing here takes or frees a slot.
import * as z from "../shared/zod.ts";
import { getCatalog } from "../catalog/store.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import { readAccounts, readConfig, TIERS, type Tier } from "../config.ts";
import { adminSecurity, commonErrors, createRoute, newRouter } from "../http/openapi.ts";
import { once } from "../lazy.ts";
import { poolStates, poolsFor } from "../limiter/pools.ts";
import { allKeyIds } from "../keys/key-index.ts";
import { keyStub } from "../keys/stub.ts";
import { keyActivitySchema, publicKeySchema, type KeyStatus } from "../keys/schema.ts";

const modelLoadSchema = once(() =>
  z.object({
    model: z.string(),
    in_flight: z.number().int(),
    limit: z.number().int().openapi({ description: "the most requests in flight allowed for this model" }),
  }),
);

const loadSchema = once(() => {
  const ModelLoadSchema = modelLoadSchema();
  const KeyLoadSchema = publicKeySchema()
    .extend({
      ...keyActivitySchema().shape,
      models: z
        .array(ModelLoadSchema)
        .openapi({ description: "every model the catalog serves, and any other with requests in flight" }),
    })
    .openapi("KeyLoad");
  return z
    .object({
      at: z.string(),
      account: z.object({ tier: z.enum(TIERS), models: z.array(ModelLoadSchema) }).openapi({
        description:
          "the gateway's upstream capacity: in flight and limits summed over its GLM accounts (tier: the first " +
          "account's)",
      }),
      keys: z.array(KeyLoadSchema),
    })
    .openapi("Load");
});

type ModelLoad = z.infer<ReturnType<typeof modelLoadSchema>>;

/** One row per served model (and per model still in flight after it was removed or disabled). */
function perModel(
  models: ModelEntry[],
  inFlight: Record<string, number>,
  limitOf: (m: ModelEntry | undefined) => number,
): ModelLoad[] {
  const served = models.filter((m) => m.status !== "disabled" || (inFlight[m.id] ?? 0) > 0);
  const others = Object.keys(inFlight).filter((id) => (inFlight[id] ?? 0) > 0 && !served.some((m) => m.id === id));
  return [
    ...served.map((m) => ({ model: m.id, in_flight: inFlight[m.id] ?? 0, limit: limitOf(m) })),
    ...others.map((id) => ({ model: id, in_flight: inFlight[id]!, limit: limitOf(models.find((m) => m.id === id)) })),
  ];
}

/**
 * A key's limit for a model: its tier's value in the catalog, lowered by its max_concurrency (as the limiter counts).
 */
function keyLimit(key: Pick<KeyStatus, "tier" | "max_concurrency">, m: ModelEntry | undefined): number {
  const tier = m?.concurrency[key.tier] ?? 0;
  return key.max_concurrency === null ? tier : Math.min(tier, key.max_concurrency);
}

export const adminLoad = newRouter();

adminLoad.openapi(
  createRoute({ method: "get", path: "/load" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary:
      "Requests in flight per model for every key and for the upstream account, with each key's last use and today's " +
      "spend",
    responses: () => ({
      200: { description: "A snapshot (read-only)", content: { "application/json": { schema: loadSchema() } } },
      ...commonErrors(),
    }),
  })),
  async (c) => {
    const { models } = (await getCatalog(c.env, c.executionCtx)).catalog;
    const accounts = readAccounts(c.env);
    const tier: Tier = accounts[0]!.tier;
    const poolsOf = (m: ModelEntry | undefined) => (m ? poolsFor(accounts, m, readConfig(c.env).guardShardSlots) : []);
    const [statuses, upstream] = await Promise.all([
      allKeyIds(c.env).then((ids) => Promise.all(ids.map((id) => keyStub(c.env, id).status()))),
      poolStates(c.env, accounts, models, readConfig(c.env).guardShardSlots).then((rows) =>
        rows.map(({ model, states }) => [model.id, states.reduce((n, s) => n + s.in_flight, 0)] as const),
      ),
    ]);
    const keys = statuses
      .filter((k) => k !== null)
      .map(({ in_flight, ...key }) => ({ ...key, models: perModel(models, in_flight, (m) => keyLimit(key, m)) }))
      .sort((a, b) => b.created_at.localeCompare(a.created_at));
    const account = {
      tier,
      models: perModel(models, Object.fromEntries(upstream), (m) => poolsOf(m).reduce((n, p) => n + p.limit, 0)),
    };
    return c.json({ at: new Date().toISOString(), account, keys }, 200);
  },
);
