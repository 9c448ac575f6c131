// Fair share of an upstream account between keys: the pool's guard serves the keys waiting for it in turn
// (the key holding the fewest slots first), and a key's max_upstream_share caps what it holds while others
// wait. Driven through acquireSlot (the Worker side) against the real key objects and guards.
import { describe, expect, it } from "vitest";
import type { Credential } from "../src/auth/credentials.ts";
import type { ModelEntry } from "../src/catalog/schema.ts";
import { IDLE_RETURN_MS } from "../src/limiter/block.ts";
import { acquireSlot, type Slot } from "../src/keys/slot.ts";
import { env } from "cloudflare:test";
import { admin, CIRCUIT, createKey, defaultPools, waitFor } from "./helpers.ts";
import { guardLeased, keyFor, keyInFlight, keyObject, model, pool, sleep } from "./limiter-helpers.ts";

const take = (cred: Credential, m: ModelEntry, queueTimeoutMs = 0) =>
  acquireSlot(env, { cred, model: m, pools: defaultPools(m), circuit: CIRCUIT, queueTimeoutMs });

/** Starts `n` requests that wait for a slot; `admitted` lists the slots in the order they were granted. */
function waiters(cred: Credential, m: ModelEntry, n: number, admitted: Slot[]): Promise<Slot>[] {
  return Array.from({ length: n }, () =>
    take(cred, m, 20_000).then((s) => {
      admitted.push(s);
      return s;
    }),
  );
}

/** Key A queues `na` waiters, then (once they are in line) key B queues `nb`. */
async function lineUp(a: Credential, na: number, b: Credential, nb: number, m: ModelEntry) {
  const aAdmitted: Slot[] = [];
  const bAdmitted: Slot[] = [];
  const aWaiting = waiters(a, m, na, aAdmitted);
  await sleep(300);
  const bWaiting = waiters(b, m, nb, bAdmitted);
  await sleep(300);
  return { aAdmitted, bAdmitted, all: Promise.all([...aWaiting, ...bWaiting]) };
}

describe("round-robin between waiting keys", () => {
  it("serves a key with one waiter at the next free slot, not after another key's many", async () => {
    const m = model("fair-rr", 2);
    const a = await keyFor();
    const b = await keyFor();
    const held = [await take(a.cred, m), await take(a.cred, m)];
    const { aAdmitted, bAdmitted, all } = await lineUp(a.cred, 6, b.cred, 1, m);
    await held[0]!.release();
    await waitFor(
      async () => aAdmitted.length + bAdmitted.length,
      (n) => n > 0,
      5_000,
    );
    await sleep(200);
    // FIFO by request would give this slot to A's first waiter (and the next five too).
    expect(bAdmitted.length).toBe(1);
    expect(aAdmitted.length).toBe(0);
    // Then A's waiters are served one by one as slots free; nothing is lost on the way.
    await held[1]!.release();
    await bAdmitted[0]!.release();
    for (let i = 0; i < 6; i++) {
      const s = await waitFor(
        async () => aAdmitted[i],
        (x) => x !== undefined,
        5_000,
      );
      await s!.release();
    }
    await all;
    expect(await keyInFlight(a.id, m.id)).toBe(0);
    expect(
      await waitFor(
        () => guardLeased(m.id),
        (n) => n === 0,
        IDLE_RETURN_MS + 3_000,
      ),
    ).toBe(0);
  });
});

/** Runs `workers` loops of take (waiting) → hold → release until `stop()`; counts this key's requests in flight. */
function load(cred: Credential, m: ModelEntry, workers: number, onChange: () => void) {
  let running = true;
  const state = { inFlight: 0, max: 0, served: 0, stop: () => (running = false), done: Promise.resolve() };
  state.done = Promise.all(
    Array.from({ length: workers }, async (_, j) => {
      while (running) {
        const slot = await take(cred, m, 20_000);
        state.inFlight++;
        state.max = Math.max(state.max, state.inFlight);
        onChange();
        await sleep(20 + ((state.served * 7 + j * 13) % 30));
        state.inFlight--;
        onChange();
        await slot.release();
        state.served++;
      }
    }),
  ).then(() => undefined);
  return state;
}

describe("max_upstream_share", () => {
  it("caps what a key holds while another key waits, and the account's bound stays exact", async () => {
    const m = model("fair-share", 4);
    const a = await keyFor({ max_upstream_share: 0.25 }); // one slot of four while others wait
    const b = await keyFor();
    let total = 0;
    let maxTotal = 0;
    let maxLeased = 0;
    const sampler = setInterval(() => void guardLeased(m.id).then((n) => (maxLeased = Math.max(maxLeased, n))), 20);
    const loads: { inFlight: number }[] = [];
    const count = () => (maxTotal = Math.max(maxTotal, (total = loads.reduce((n, l) => n + l.inFlight, 0))));
    // B starts first and always has more callers than the account has slots: it is always waiting.
    const loadB = load(b.cred, m, 6, count);
    loads.push(loadB);
    await sleep(200);
    const loadA = load(a.cred, m, 6, count);
    loads.push(loadA);
    await sleep(2_500);
    // A stops first: B is waiting for the whole of A's run.
    loadA.stop();
    await loadA.done;
    loadB.stop();
    await loadB.done;
    clearInterval(sampler);
    expect(total).toBe(0);
    // Without the share, turns by fewest held would give A two of the four slots.
    expect(loadA.served).toBeGreaterThan(5);
    expect(loadA.max).toBe(1);
    expect(loadB.max).toBeGreaterThanOrEqual(3); // B uses what A may not
    expect(maxTotal).toBeLessThanOrEqual(4);
    expect(maxLeased).toBeLessThanOrEqual(4);
    expect(
      await waitFor(
        () => guardLeased(m.id),
        (n) => n === 0,
        IDLE_RETURN_MS + 3_000,
      ),
    ).toBe(0);
  });

  it("is work-conserving: alone, a key with a share may use the whole account", async () => {
    const m = model("fair-alone", 4);
    const a = await keyFor({ max_upstream_share: 0.25 });
    const slots = await Promise.all(Array.from({ length: 4 }, () => take(a.cred, m, 5_000)));
    expect(await keyInFlight(a.id, m.id)).toBe(4);
    expect(await guardLeased(m.id)).toBe(4);
    // The account is full: a fifth is refused as before.
    await expect(take(a.cred, m)).rejects.toMatchObject({ status: 429, code: "1302" });
    await Promise.all(slots.map((s) => s.release()));
  });

  it("a key at its share yields every free slot to another key waiting, then may use them again", async () => {
    const m = model("fair-share-turn", 4);
    const a = await keyFor({ max_upstream_share: 0.25 }); // one slot while others wait
    const b = await keyFor();
    // A alone takes the whole account (work-conserving), then queues more; B queues after it.
    const held = await Promise.all(Array.from({ length: 4 }, () => take(a.cred, m, 5_000)));
    const { aAdmitted, bAdmitted, all } = await lineUp(a.cred, 3, b.cred, 3, m);
    // A's slots free one by one. Turns by fewest held alone would give the third to A (A 1, B 2): the
    // share says A holds at most one while B waits, so all three go to B.
    for (let i = 0; i < 3; i++) {
      await held[i]!.release();
      await waitFor(
        async () => bAdmitted.length,
        (n) => n === i + 1,
        5_000,
      );
    }
    await sleep(200);
    expect(bAdmitted.length).toBe(3);
    expect(aAdmitted.length).toBe(0);
    // B has nobody waiting now: the last slot goes to A, and so do B's as they free (A alone in line).
    await held[3]!.release();
    await waitFor(
      async () => aAdmitted.length,
      (n) => n === 1,
      5_000,
    );
    await bAdmitted[0]!.release();
    await bAdmitted[1]!.release();
    await waitFor(
      async () => aAdmitted.length,
      (n) => n === 3,
      5_000,
    );
    expect(await keyInFlight(a.id, m.id)).toBe(3);
    await all;
    await Promise.all([...aAdmitted, bAdmitted[2]!].map((s) => s.release()));
    expect(
      await waitFor(
        () => guardLeased(m.id),
        (n) => n === 0,
        IDLE_RETURN_MS + 3_000,
      ),
    ).toBe(0);
  });
});

describe("a key's block and its share", () => {
  it("keeps no idle slot beyond the key's share, even after a peak above it", async () => {
    const m = model("fair-block", 20); // not tight at ten leased or fewer: blocks keep their peak and headroom
    const a = await keyFor({ max_upstream_share: 0.1 }); // two slots while others wait
    const b = await keyFor();
    const blockOf = async (id: string) => (await keyObject(id).upstreamBlocks())[pool(m.id)] ?? { size: 0, used: 0 };
    const slotsA = await Promise.all(Array.from({ length: 4 }, () => take(a.cred, m)));
    const slotsB = await Promise.all(Array.from({ length: 4 }, () => take(b.cred, m)));
    for (const s of [...slotsA.slice(1), ...slotsB.slice(1)]) await s.release();
    // Without a share, B's block follows its recent peak of four (three idle slots or more) for a while.
    expect((await blockOf(b.id)).size).toBeGreaterThanOrEqual(4);
    // A, with a share of two, keeps one in use and one idle: never an idle slot beyond its share.
    expect(await blockOf(a.id)).toEqual({ size: 2, used: 1 });
    await slotsA[0]!.release();
    await slotsB[0]!.release();
    expect(
      await waitFor(
        () => guardLeased(m.id),
        (n) => n === 0,
        IDLE_RETURN_MS + 3_000,
      ),
    ).toBe(0);
  });
});

describe("the account's bound with turns and shares", () => {
  it("admits exactly the limit under a burst of keys with shares, serves every waiter, and leaks nothing", async () => {
    const m = model("fair-burst", 5);
    const keys = await Promise.all([0.5, 0.5, 0.2, null].map((share) => keyFor({ max_upstream_share: share })));
    let inFlight = 0;
    let maxInFlight = 0;
    let maxLeased = 0;
    const sampler = setInterval(() => void guardLeased(m.id).then((n) => (maxLeased = Math.max(maxLeased, n))), 20);
    const results = await Promise.all(
      keys.flatMap((k) =>
        Array.from({ length: 6 }, async () => {
          const slot = await take(k.cred, m, 15_000);
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await sleep(30);
          inFlight--;
          await slot.release();
          return true;
        }),
      ),
    );
    clearInterval(sampler);
    expect(results.length).toBe(24); // every waiter was served
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

describe("max_upstream_share in the admin API", () => {
  it("is validated (400 1214 naming the field), stored, shown and changed", async () => {
    for (const bad of [0, -0.1, 1.5, "0.5", true]) {
      const res = await admin("POST", "/keys", { name: "share", max_upstream_share: bad });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({
        error: { code: "1214", message: expect.stringContaining("max_upstream_share") },
      });
    }
    const created = await createKey({ max_upstream_share: 0.5 });
    expect(created).toMatchObject({ max_upstream_share: 0.5 });
    expect(await (await admin("GET", `/keys/${created.id}`)).json()).toMatchObject({ max_upstream_share: 0.5 });
    const bad = await admin("PATCH", `/keys/${created.id}`, { max_upstream_share: 2 });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      error: { code: "1214", message: expect.stringContaining("max_upstream_share") },
    });
    const patched = await admin("PATCH", `/keys/${created.id}`, { max_upstream_share: 1 });
    expect(await patched.json()).toMatchObject({ max_upstream_share: 1 });
    const list = (await (await admin("GET", "/keys?limit=1000")).json()) as {
      data: { id: string; max_upstream_share: number | null }[];
    };
    expect(list.data.find((k) => k.id === created.id)?.max_upstream_share).toBe(1);
    expect(await (await admin("PATCH", `/keys/${created.id}`, { max_upstream_share: null })).json()).toMatchObject({
      max_upstream_share: null,
    });
    // A key made without it shows null (no cap).
    expect(await createKey()).toMatchObject({ max_upstream_share: null });
  });
});
