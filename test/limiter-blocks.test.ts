// Admission in one round trip: a key's object hands out upstream slots from a block it leases from the
// model's UpstreamGuard. These tests drive acquireSlot (the Worker side) against the real objects and check
// the round trips per request, the account-wide bound across keys, slots given back, waiting for upstream
// capacity with the key slot kept, renewal that retries and retakes, and clients that leave while queued.
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Credential } from "../src/auth/credentials.ts";
import type { ModelEntry } from "../src/catalog/schema.ts";
import { GatewayError } from "../src/errors.ts";
import type { KeyObject } from "../src/keys/key-object.ts";
import { IDLE_RETURN_MS } from "../src/limiter/block.ts";
import type { UpstreamGuard } from "../src/limiter/guard.ts";
import { acquireSlot } from "../src/keys/slot.ts";
import { CIRCUIT, defaultPools, waitFor } from "./helpers.ts";
import { guard, guardLeased, keyFor, keyInFlight, keyObject, model, pool, sleep } from "./limiter-helpers.ts";

const guardCalls = (m: string) => runInDurableObject(guard(m), (g: UpstreamGuard) => g.calls);

/** The test environment with every call to a key's object counted by method name. */
function countingEnv(): { env: Env; calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const KEYS = {
    idFromName: (name: string) => env.KEYS.idFromName(name),
    get: (id: DurableObjectId) => {
      const stub = env.KEYS.get(id);
      return new Proxy(stub, {
        get(target, prop: string) {
          const method = (target as unknown as Record<string, (...a: unknown[]) => unknown>)[prop];
          if (typeof method !== "function") return method;
          return (...args: unknown[]) => {
            calls[prop] = (calls[prop] ?? 0) + 1;
            return method(...args);
          };
        },
      });
    },
  };
  return { env: { ...env, KEYS } as unknown as Env, calls };
}

const take = (e: Env, cred: Credential, m: ModelEntry, queueTimeoutMs = 0, signal?: AbortSignal) =>
  acquireSlot(e, { cred, model: m, pools: defaultPools(m), circuit: CIRCUIT, queueTimeoutMs, signal });

describe("one round trip per request", () => {
  it("admits and releases with one call to the key's object each, and the guard is not asked per request", async () => {
    const m = model("blocks-steady", 100);
    const k = await keyFor();
    const counting = countingEnv();
    const guardBefore = await guardCalls(m.id);
    // Five callers, twenty requests each, back to back: a steady load of about five in flight.
    await Promise.all(
      Array.from({ length: 5 }, async () => {
        for (let i = 0; i < 20; i++) {
          const slot = await take(counting.env, k.cred, m);
          await slot.release();
        }
      }),
    );
    expect(counting.calls).toEqual({ acquire: 100, release: 100 });
    // Before blocks, each request asked the guard twice (acquire and release): 200 calls here.
    expect((await guardCalls(m.id)) - guardBefore).toBeLessThanOrEqual(10);
  });

  it("reports the key's requests in flight, not its block's size", async () => {
    const m = model("blocks-info", 100);
    const k = await keyFor();
    const slots = await Promise.all(Array.from({ length: 3 }, () => take(env, k.cred, m)));
    expect(await keyInFlight(k.id, m.id)).toBe(3);
    const blocks = await keyObject(k.id).upstreamBlocks();
    expect(blocks[pool(m.id)]!.used).toBe(3);
    expect(blocks[pool(m.id)]!.size).toBeGreaterThan(3); // the headroom
    expect(await guardLeased(m.id)).toBe(blocks[pool(m.id)]!.size);
    await Promise.all(slots.map((s) => s.release()));
    expect(await keyInFlight(k.id, m.id)).toBe(0);
  });
});

describe("the account's bound across keys", () => {
  it("admits exactly the account limit when several keys burst at once, and leaks nothing", async () => {
    const m = model("blocks-burst", 7);
    const keys = await Promise.all(Array.from({ length: 4 }, () => keyFor()));
    const results = await Promise.allSettled(
      keys.flatMap((k) => Array.from({ length: 6 }, () => take(env, k.cred, m))),
    );
    const admitted = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const refused = results.flatMap((r) => (r.status === "rejected" ? [r.reason as GatewayError] : []));
    expect(admitted.length).toBe(7);
    for (const e of refused) {
      expect(e.status).toBe(429);
      expect(e.code).toBe("1302");
      expect(e.message).toContain("upstream capacity");
    }
    // Exactly the admitted requests carry slots, and the guard counts no more than its limit.
    const inFlight = await Promise.all(keys.map((k) => keyInFlight(k.id, m.id)));
    expect(inFlight.reduce((a, b) => a + b, 0)).toBe(7);
    expect(await guardLeased(m.id)).toBe(7);
    await Promise.all(admitted.map((s) => s.release()));
    // Every block goes back: at once when the account is tight, else after the idle delay.
    expect(
      await waitFor(
        () => guardLeased(m.id),
        (n) => n === 0,
        IDLE_RETURN_MS + 3_000,
      ),
    ).toBe(0);
  });

  it("never has more requests in flight than the account limit while keys come and go and wait", async () => {
    const m = model("blocks-churn", 5);
    const keys = await Promise.all(Array.from({ length: 3 }, () => keyFor()));
    let inFlight = 0;
    let maxInFlight = 0;
    let maxLeased = 0;
    let served = 0;
    const sampler = setInterval(() => void guardLeased(m.id).then((n) => (maxLeased = Math.max(maxLeased, n))), 20);
    await Promise.all(
      keys.flatMap((k) =>
        Array.from({ length: 3 }, async (_, j) => {
          for (let i = 0; i < 6; i++) {
            const slot = await take(env, k.cred, m, 10_000);
            inFlight++;
            maxInFlight = Math.max(maxInFlight, inFlight);
            await sleep(5 + ((i * 7 + j * 13) % 30));
            inFlight--;
            await slot.release();
            served++;
          }
        }),
      ),
    );
    clearInterval(sampler);
    expect(served).toBe(54); // everyone waited its turn; none was refused
    expect(maxInFlight).toBe(5);
    expect(maxLeased).toBeLessThanOrEqual(5);
    expect(
      await waitFor(
        () => guardLeased(m.id),
        (n) => n === 0,
        IDLE_RETURN_MS + 3_000,
      ),
    ).toBe(0);
  });
});

describe("waiting for the account's capacity", () => {
  it("keeps the key slot for the whole wait, longer than a lease lives", async () => {
    const m = model("blocks-wait", 1);
    const k = await keyFor();
    // Leases live 1.5 s at this key; the request waits 4.5 s, three lifetimes (as 60 s would be two at 30 s).
    await runInDurableObject(keyObject(k.id), (o: KeyObject) => void (o.ttlMs = 1_500));
    const holder = await guard(m.id).acquire(pool(m.id), 1);
    expect(holder.granted).toBe(true);
    const pending = take(env, k.cred, m, 20_000);
    const seen: number[] = [];
    for (let t = 0; t < 4_500; t += 150) {
      await sleep(150);
      seen.push(await keyInFlight(k.id, m.id));
    }
    expect(Math.min(...seen)).toBe(1);
    if (holder.granted) await guard(m.id).release(holder.leaseId);
    const slot = await pending;
    expect(await keyInFlight(k.id, m.id)).toBe(1);
    await slot.release();
    expect(await keyInFlight(k.id, m.id)).toBe(0);
  });

  it("a client that leaves while queued for upstream capacity is never admitted and holds nothing", async () => {
    const m = model("blocks-abort", 1);
    const k = await keyFor();
    const holder = await guard(m.id).acquire(pool(m.id), 1);
    const ac = new AbortController();
    const pending = take(env, k.cred, m, 20_000, ac.signal);
    await sleep(300);
    expect(await keyInFlight(k.id, m.id)).toBe(1); // it waits with its key slot
    ac.abort();
    const err = await pending.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GatewayError);
    expect(err).toMatchObject({ status: 408, code: "1234", message: "client closed the request" });
    expect(await keyInFlight(k.id, m.id)).toBe(0);
    // Its place in the guard's line is gone too: once the holder leaves, a caller that will not wait is admitted.
    if (holder.granted) await guard(m.id).release(holder.leaseId);
    const next = await take(env, k.cred, m);
    await next.release();
    expect((await keyObject(k.id).usage("2000-01-01", "2100-01-01")).totals.requests).toBe(0);
  });

  it("a client that leaves while queued for the key's own limit is never admitted", async () => {
    const m = model("blocks-abort-key", 100);
    const k = await keyFor({ max_concurrency: 1 });
    const first = await take(env, k.cred, m);
    const ac = new AbortController();
    const pending = take(env, k.cred, m, 20_000, ac.signal);
    await sleep(200);
    ac.abort();
    await expect(pending).rejects.toMatchObject({ status: 408 });
    await first.release();
    // Nobody is left ahead in the key's line: a request that will not wait is admitted at once.
    const next = await take(env, k.cred, m);
    expect(await keyInFlight(k.id, m.id)).toBe(1);
    await next.release();
  });
});

describe("renewal", () => {
  it("retries a renewal whose call failed", async () => {
    const m = model("blocks-renew-retry", 100);
    const k = await keyFor();
    let failures = 1;
    let renews = 0;
    const flaky = {
      ...env,
      KEYS: {
        idFromName: (n: string) => env.KEYS.idFromName(n),
        get: (id: DurableObjectId) => {
          const stub = env.KEYS.get(id);
          return new Proxy(stub, {
            get: (t, p: string) =>
              p === "renew"
                ? (...a: Parameters<typeof stub.renew>) => {
                    renews++;
                    return failures-- > 0 ? Promise.reject(new Error("network blip")) : t.renew(...a);
                  }
                : (t as unknown as Record<string, unknown>)[p],
          });
        },
      },
    } as unknown as Env;
    const slot = await take(flaky, k.cred, m);
    expect(await slot.renew()).toBe(true);
    expect(renews).toBe(2);
    await slot.release();
  });

  it("takes a lost lease again, and resolves false when it cannot", async () => {
    const m = model("blocks-retake", 100);
    const k = await keyFor({ max_concurrency: 1 });
    const slot = await take(env, k.cred, m);
    // The lease lapses (as if renewals never arrived) and the alarm reclaims it and its upstream slot.
    const lapse = () =>
      runInDurableObject(
        keyObject(k.id),
        (_o, state) => void state.storage.sql.exec("UPDATE leases SET expires_at = ?", Date.now() - 1),
      );
    await lapse();
    await runDurableObjectAlarm(keyObject(k.id));
    expect(await keyInFlight(k.id, m.id)).toBe(0);
    expect(await slot.renew()).toBe(true);
    expect(await keyInFlight(k.id, m.id)).toBe(1);
    expect((await keyObject(k.id).upstreamBlocks())[pool(m.id)]!.used).toBe(1);

    // Lost again, and meanwhile another request took the key's only slot: the request must end.
    await lapse();
    await runDurableObjectAlarm(keyObject(k.id));
    const other = await take(env, k.cred, m);
    let lost = 0;
    const stop = slot.keepAlive({ waitUntil: () => undefined }, 30, () => lost++);
    expect(await slot.renew()).toBe(false);
    await waitFor(
      async () => lost,
      (n) => n === 1,
    );
    stop();
    expect(await keyInFlight(k.id, m.id)).toBe(1); // the other request's, and only it
    await slot.release();
    await other.release();
  });

  it("replaces block slots that lapsed at the guard, and resolves false when the account is full", async () => {
    const m = model("blocks-lapse", 1);
    const k = await keyFor();
    const slot = await take(env, k.cred, m);
    // The guard lost the block (its slots expired there), and the key's block is due for renewal.
    const lapseAtGuard = async () => {
      await runInDurableObject(guard(m.id), (_g, state) => void state.storage.sql.exec("DELETE FROM leases"));
      await runInDurableObject(
        keyObject(k.id),
        (_o, state) => void state.storage.sql.exec("UPDATE pool_slots SET expires_at = ?", Date.now() + 2_000),
      );
    };
    await lapseAtGuard();
    expect(await guardLeased(m.id)).toBe(0);
    expect(await slot.renew()).toBe(true);
    expect(await guardLeased(m.id)).toBe(1); // counted again at the guard
    await lapseAtGuard();
    const intruder = await guard(m.id).acquire(pool(m.id), 1); // someone else takes the account's only slot
    expect(intruder.granted).toBe(true);
    expect(await slot.renew()).toBe(false);
    expect(await keyInFlight(k.id, m.id)).toBe(0);
    if (intruder.granted) await guard(m.id).release(intruder.leaseId);
    await slot.release();
  });
});

describe("idle keys", () => {
  it("give their block back soon after their last request ends", async () => {
    const m = model("blocks-idle", 100);
    const k = await keyFor();
    const slot = await take(env, k.cred, m);
    expect(await guardLeased(m.id)).toBeGreaterThan(1); // the request's slot and some headroom
    await slot.release();
    expect(await guardLeased(m.id)).toBeGreaterThan(0); // kept briefly for the next request
    expect(
      await waitFor(
        () => guardLeased(m.id),
        (n) => n === 0,
        IDLE_RETURN_MS + 3_000,
      ),
    ).toBe(0);
    expect((await keyObject(k.id).upstreamBlocks())[pool(m.id)]).toBeUndefined();
  });
});
