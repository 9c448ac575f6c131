// Where a model's upstream slots live: one pool per (account, model), each counted by its own UpstreamGuard
// object, and split into shards when the account's limit for the model is large (README: capacity model).
// A pool's name is its guard object's name and the key its leases are counted under.
import type { ModelEntry } from "../catalog/schema.ts";
import type { Account } from "../config.ts";
import type { PoolState } from "./guard.ts";

export interface Pool {
  /** "<account>:<model>", or "<account>:<model>#<shard>" when the account's limit is sharded. */
  name: string;
  account: string;
  /** This pool's share of the account's limit for the model (the whole limit when not sharded). */
  limit: number;
  /** The account's weight: breaks ties between accounts with as much free capacity. */
  weight: number;
}

/** What the guards need to run an account's circuit breaker, from the configuration. */
export interface CircuitConfig {
  failures: number;
  cooldownMs: number;
}

/** Shards for a limit: enough that none holds more than `shardSlots` slots. */
export function shardCount(limit: number, shardSlots: number): number {
  return Math.max(1, Math.ceil(limit / Math.max(1, shardSlots)));
}

/**
 * The model's pools over all accounts. Shard i of S holds floor(L/S), plus one for the first L mod S shards,
 * so the shares add up to exactly the account's limit L. An account whose tier allows the model nothing is
 * left out.
 */
export function poolsFor(accounts: Account[], model: ModelEntry, shardSlots: number): Pool[] {
  return accounts.flatMap((a) => {
    const limit = model.concurrency[a.tier];
    if (limit <= 0) return [];
    const s = shardCount(limit, shardSlots);
    const base = `${a.id}:${model.id}`;
    if (s === 1) return [{ name: base, account: a.id, limit, weight: a.weight }];
    return Array.from({ length: s }, (_, i) => ({
      name: `${base}#${i}`,
      account: a.id,
      limit: Math.floor(limit / s) + (i < limit % s ? 1 : 0),
      weight: a.weight,
    }));
  });
}

export function guardStub(env: Env, pool: string) {
  return env.GUARD.get(env.GUARD.idFromName(pool));
}

/**
 * For each model served at the accounts, its pools and what their guards report now, asked all at once (one
 * call per shard): the read-only snapshot the admin views sum up. A model no account serves is left out.
 */
export async function poolStates(
  env: Env,
  accounts: Account[],
  models: ModelEntry[],
  shardSlots: number,
): Promise<{ model: ModelEntry; pools: Pool[]; states: PoolState[] }[]> {
  const served = models
    .map((model) => ({ model, pools: poolsFor(accounts, model, shardSlots) }))
    .filter((m) => m.pools.length > 0);
  return Promise.all(
    served.map(async (m) => ({
      ...m,
      states: await Promise.all(m.pools.map((p) => guardStub(env, p.name).state(p.name))),
    })),
  );
}
