// An account's circuit against the keys' blocks (issue 13): slots a key's block still holds of a pool whose
// circuit has opened are not handed out (they go back to the guard), the probe's slot does not let a second
// request through before the probe's verdict, and a 5xx answer at the model's last usable account does not
// open its circuit (refused connections and timeouts still do). These drive acquireSlot (the Worker side)
// against the real objects with a circuit of their own; verdicts are what the pipeline reports.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Credential } from "../src/auth/credentials.ts";
import type { ModelEntry } from "../src/catalog/schema.ts";
import type { Account } from "../src/config.ts";
import { GatewayError } from "../src/errors.ts";
import { IDLE_RETURN_MS } from "../src/limiter/block.ts";
import type { CircuitView } from "../src/limiter/guard.ts";
import { guardStub, poolsFor, type CircuitConfig, type Pool } from "../src/limiter/pools.ts";
import { acquireSlot, type Slot } from "../src/keys/slot.ts";
import { defaultPools, waitFor } from "./helpers.ts";
import { guard, guardLeased, keyFor, keyObject, model, pool, sleep } from "./limiter-helpers.ts";

// A cooldown shorter than a key keeps an idle block (IDLE_RETURN_MS): without the circuit's own check, the
// slots a key took before the circuit opened would still be in its block when the cooldown ends.
const FAST: CircuitConfig = { failures: 1, cooldownMs: IDLE_RETURN_MS / 2 };

const take = (cred: Credential, m: ModelEntry, pools: Pool[] = defaultPools(m), circuit = FAST) =>
  acquireSlot(env, { cred, model: m, pools, circuit, queueTimeoutMs: 0 });
/** A take that answers the refusal instead of throwing it. */
const attempt = (p: Promise<Slot>): Promise<Slot | GatewayError> =>
  p.catch((err: unknown) => {
    if (err instanceof GatewayError) return err;
    throw err;
  });
const circuitOf = async (p: string): Promise<CircuitView> => (await guardStub(env, p).state(p)).circuit;
const untilRetry = (c: CircuitView) => sleep(Math.max(0, (c.retryAt ?? 0) - Date.now()) + 50);

describe("an open circuit and the key's block", () => {
  it("hands out no leftover slot of an open pool, gives them back, and after the cooldown lets only the probe go", async () => {
    const m = model("circuit-leftover", 20);
    const k = await keyFor();
    const slots = await Promise.all([take(k.cred, m), take(k.cred, m), take(k.cred, m)]);
    await Promise.all(slots.slice(1).map((s) => s.release()));
    // Closed, the key keeps idle slots for its next requests.
    expect((await keyObject(k.id).upstreamBlocks())[pool(m.id)]!.size).toBeGreaterThan(1);

    await slots[0]!.release(undefined, "fail");
    const opened = await waitFor(
      () => circuitOf(pool(m.id)),
      (c) => c.state === "open",
    );
    expect(opened.state).toBe("open");
    // Open: refused at once with a 503, though the block may still hold slots.
    const during = await attempt(take(k.cred, m));
    expect(during).toBeInstanceOf(GatewayError);
    expect((during as GatewayError).status).toBe(503);

    // After the cooldown (before an idle block would have gone back by itself): two requests at once, and only
    // one is let through — the guard's probe. The other is refused as the circuit's, not as a full account.
    await untilRetry(opened);
    const both = await Promise.all([attempt(take(k.cred, m)), attempt(take(k.cred, m))]);
    const admitted = both.filter((x): x is Slot => !(x instanceof GatewayError));
    const refused = both.filter((x): x is GatewayError => x instanceof GatewayError);
    expect(admitted).toHaveLength(1);
    expect(refused[0]?.status).toBe(503);
    // The key holds the probe's slot and nothing idle beside it.
    expect(await guardLeased(m.id)).toBe(1);
    expect((await keyObject(k.id).upstreamBlocks())[pool(m.id)]).toEqual({ size: 1, used: 1 });

    // The probe succeeds: the circuit closes and requests flow again.
    await admitted[0]!.release(undefined, "ok");
    expect(
      (
        await waitFor(
          () => circuitOf(pool(m.id)),
          (c) => c.state === "closed",
        )
      ).state,
    ).toBe("closed");
    const after = await Promise.all([take(k.cred, m), take(k.cred, m)]);
    await Promise.all(after.map((s) => s.release(undefined, "ok")));
  });

  it("gives a block's idle slots back as soon as it hears the circuit opened, and each slot freed there after", async () => {
    const m = model("circuit-give-back", 20);
    const k = await keyFor();
    // A long cooldown, and a request left in flight: the block is never idle, so only the circuit empties it.
    const LONG: CircuitConfig = { failures: 1, cooldownMs: 60_000 };
    const [failing, busy, done] = await Promise.all([
      take(k.cred, m, undefined, LONG),
      take(k.cred, m, undefined, LONG),
      take(k.cred, m, undefined, LONG),
    ]);
    await done!.release();
    expect((await keyObject(k.id).upstreamBlocks())[pool(m.id)]!.size).toBeGreaterThan(2);
    await failing!.release(undefined, "fail");
    const blocks = await waitFor(
      () => keyObject(k.id).upstreamBlocks(),
      (b) => b[pool(m.id)]?.size === 1,
    );
    expect(blocks[pool(m.id)]).toEqual({ size: 1, used: 1 });
    expect(
      await waitFor(
        () => guardLeased(m.id),
        (n) => n === 1,
      ),
    ).toBe(1);
    // The request still at GLM keeps its slot; when it ends, the slot goes back too.
    await busy!.release(undefined, "ok");
    expect(
      await waitFor(
        () => guardLeased(m.id),
        (n) => n === 0,
      ),
    ).toBe(0);
    expect((await keyObject(k.id).upstreamBlocks())[pool(m.id)]).toBeUndefined();
    const refused = await attempt(take(k.cred, m, undefined, LONG));
    expect((refused as GatewayError).status).toBe(503);
  });
});

describe("the probe decides alone", () => {
  it("the probe's slot goes to no other request before the verdict: a failure reopens, a success closes", async () => {
    const m = model("circuit-probe-slot", 20);
    const k = await keyFor();
    // A cooldown longer than an idle block is kept: the probe is the guard's own grant, not a leftover slot.
    const SLOW: CircuitConfig = { failures: 1, cooldownMs: IDLE_RETURN_MS + 1000 };
    const first = await take(k.cred, m, undefined, SLOW);
    await first.release(undefined, "fail");
    const opened = await waitFor(
      () => circuitOf(pool(m.id)),
      (c) => c.state === "open",
    );
    await waitFor(
      () => keyObject(k.id).upstreamBlocks(),
      (b) => b[pool(m.id)] === undefined,
    );
    await untilRetry(opened);

    // The probe fails; a request of the same key arriving right behind its release must not take its slot.
    const probe = await take(k.cred, m, undefined, SLOW);
    expect((await circuitOf(pool(m.id))).state).toBe("half_open");
    const [, behind] = await Promise.all([probe.release(undefined, "fail"), attempt(take(k.cred, m, undefined, SLOW))]);
    expect(behind).toBeInstanceOf(GatewayError);
    expect((behind as GatewayError).status).toBe(503);
    const reopened = await waitFor(
      () => circuitOf(pool(m.id)),
      (c) => c.state === "open" && c.retryAt! > opened.retryAt!,
    );
    expect(reopened.state).toBe("open");
    expect(await guardLeased(m.id)).toBe(0);

    // The next probe succeeds: once the verdict is in, the others flow.
    await untilRetry(reopened);
    const second = await take(k.cred, m, undefined, SLOW);
    await second.release(undefined, "ok");
    expect(
      (
        await waitFor(
          () => circuitOf(pool(m.id)),
          (c) => c.state === "closed",
        )
      ).state,
    ).toBe("closed");
    const flow = await Promise.all([
      take(k.cred, m, undefined, SLOW),
      take(k.cred, m, undefined, SLOW),
      take(k.cred, m, undefined, SLOW),
    ]);
    expect(flow).toHaveLength(3);
    await Promise.all(flow.map((s) => s.release(undefined, "ok")));
  });
});

describe("the guard's probe", () => {
  it("is granted to one caller only, however many ask at once after the cooldown", async () => {
    const p = `probe-race:${crypto.randomUUID().slice(0, 8)}`;
    const g = guardStub(env, p);
    await g.report(p, 10, { ok: 0, fail: 1 }, { failures: 1, cooldownMs: 200 });
    const opened = await circuitOf(p);
    expect(opened.state).toBe("open");
    await untilRetry(opened);
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => g.take(p, 10, { need: 1, owner: `k${i}` })));
    expect(answers.filter((a) => a.granted)).toHaveLength(1);
    expect(answers.filter((a) => a.probe)).toHaveLength(1);
    expect((await circuitOf(p)).state).toBe("half_open");
  });
});

describe("5xx answers at the last usable account", () => {
  const accounts = (...ids: string[]): Account[] =>
    ids.map((id, i) => ({ id, key: "unused", tier: "V0", baseUrl: "", weight: ids.length - i }));
  const THREE: CircuitConfig = { failures: 3, cooldownMs: 60_000 };
  /** One attempt after another at whichever account admission picks, each ending with `verdict`. */
  const attempts = async (cred: Credential, m: ModelEntry, pools: Pool[], n: number, verdict: "error" | "fail") => {
    const at: string[] = [];
    for (let i = 0; i < n; i++) {
      const s = await take(cred, m, pools, THREE);
      at.push(s.account);
      await s.release(undefined, verdict);
      // Reports travel off the caller's path: let each reach its guard before the next attempt.
      await sleep(50);
    }
    return at;
  };

  it("with one account, 5xx answers do not open its circuit but unreachability does", async () => {
    const m = model("circuit-alone", 20);
    const k = await keyFor();
    await attempts(k.cred, m, defaultPools(m), 4, "error");
    const state = await waitFor(
      () => guard(m.id).state(pool(m.id)),
      (s) => s.recent_failures === 4,
    );
    expect(state).toMatchObject({ recent_failures: 4, circuit: { state: "closed", consecutive: 0 } });
    await attempts(k.cred, m, defaultPools(m), 3, "fail");
    expect(
      (
        await waitFor(
          () => circuitOf(pool(m.id)),
          (c) => c.state === "open",
        )
      ).state,
    ).toBe("open");
  });

  it("with two accounts, 5xx answers open the first one's circuit, then not the last one's", async () => {
    const m = model("circuit-two", 20);
    const a = `a${crypto.randomUUID().slice(0, 8)}`,
      b = `b${crypto.randomUUID().slice(0, 8)}`;
    const pools = poolsFor(accounts(a, b), m, 500);
    const k = await keyFor();
    // The heavier account comes first while both are free; three 5xx there open its circuit.
    expect(await attempts(k.cred, m, pools, 3, "error")).toEqual([a, a, a]);
    expect(
      (
        await waitFor(
          () => circuitOf(`${a}:${m.id}`),
          (c) => c.state === "open",
        )
      ).state,
    ).toBe("open");
    // Now the other account is the last usable one: its 5xx are counted but do not open it.
    expect(await attempts(k.cred, m, pools, 4, "error")).toEqual([b, b, b, b]);
    const last = await waitFor(
      () => guardStub(env, `${b}:${m.id}`).state(`${b}:${m.id}`),
      (s) => s.recent_failures === 4,
    );
    expect(last).toMatchObject({ recent_failures: 4, circuit: { state: "closed" } });
  });
});
