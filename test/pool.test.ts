// The upstream pool (issue 13): several GLM accounts, each played by its own simulator. Configuration errors
// answer 503 naming the field; a failure before the first byte is retried on another account (and, failing
// for good, on a fallback model, priced as that model); a mid-stream failure is never retried; a dead
// account's circuit opens after one failure here and is skipped from then on; the sum in flight at each
// simulator never passes its account's tier limit under a burst; a sharded guard keeps the bound exactly; and
// the only account's 5xx answers pass through rather than open its circuit.
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, inject, it } from "vitest";
import { createApp } from "../src/app.ts";
import { sha256Hex } from "../src/auth/crypto.ts";
import { DEFAULT_CATALOG } from "../src/catalog/default.ts";
import type { ModelEntry } from "../src/catalog/schema.ts";
import { GatewayError } from "../src/errors.ts";
import { IDLE_RETURN_MS } from "../src/limiter/block.ts";
import { guardStub, poolsFor } from "../src/limiter/pools.ts";
import { acquireSlot, type Slot } from "../src/keys/slot.ts";
import { costNano } from "../src/usage/cost.ts";
import type { SimStats } from "../sim/simulator.ts";
import { ADMIN, chatBody, CIRCUIT, createKey, sseData, waitFor } from "./helpers.ts";

const SIMS = inject("poolSimUrls");
const DEAD = "http://127.0.0.1:9/api/paas/v4"; // nothing listens: connection refused

/** Fresh account ids per test, so each test has its own guards and circuits. */
const uid = () => crypto.randomUUID().slice(0, 8);

interface AccountSpec {
  id: string;
  url: string;
  tier?: string;
  weight?: number;
}

function upstreams(accounts: AccountSpec[]): string {
  return JSON.stringify(
    accounts.map((a) => ({
      id: a.id,
      key: `${a.id}.secret-${a.id}`,
      tier: a.tier ?? "V3",
      base_url: a.url,
      ...(a.weight ? { weight: a.weight } : {}),
    })),
  );
}

const simBase = (i: number) => `${SIMS[i]}/api/paas/v4`;

async function sim(i: number, config: Record<string, unknown> = {}): Promise<void> {
  await fetch(`${SIMS[i]}/_sim/reset`, { method: "POST" });
  if (Object.keys(config).length) {
    await fetch(`${SIMS[i]}/_sim/config`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(config),
    });
  }
}

const stats = async (i: number) => (await (await fetch(`${SIMS[i]}/_sim/stats`)).json()) as SimStats;

/** A request through a fresh app whose bindings are overridden (the accounts, the retry settings). */
async function call(overrides: Record<string, string>, path: string, init: RequestInit): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await createApp().fetch(
    new Request(`http://gateway.test${path}`, init),
    { ...env, ...overrides } as Env,
    ctx,
  );
  // Streams are read by the caller; the context is waited on only for whole answers.
  if (!res.headers.get("content-type")?.startsWith("text/event-stream")) await waitOnExecutionContext(ctx);
  return res;
}

const chatVia = (vars: Record<string, string>, key: string, body: unknown, headers: Record<string, string> = {}) =>
  call(vars, "/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

const adminVia = (vars: Record<string, string>, path: string) =>
  call(vars, `/admin${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });

interface Rec {
  request_id: string;
  model: string;
  status: number;
  account: string;
  attempt: number;
  cost_cny: number;
  ended: string;
}

async function records(vars: Record<string, string>, keyId: string): Promise<Rec[]> {
  return ((await (await adminVia(vars, `/keys/${keyId}/requests`)).json()) as { data: Rec[] }).data;
}

describe("configuration", () => {
  it("answers 503 naming the faulty field of GLM_UPSTREAMS, never a key", async () => {
    const k = await createKey();
    const bad = await chatVia(
      { GLM_UPSTREAMS: JSON.stringify([{ id: "a", key: "a.very-secret", tier: "V9" }]) },
      k.key,
      chatBody("x"),
    );
    expect(bad.status).toBe(503);
    const text = await bad.text();
    expect(text).toContain("GLM_UPSTREAMS[0].tier");
    expect(text).not.toContain("very-secret");
    const notJson = await chatVia({ GLM_UPSTREAMS: '[{"id":"a","key":"a.very-secret",' }, k.key, chatBody("x"));
    expect(notJson.status).toBe(503);
    const t2 = await notJson.text();
    expect(t2).toContain("GLM_UPSTREAMS is not valid JSON");
    expect(t2).not.toContain("very-secret");
    const dup = await chatVia(
      {
        GLM_UPSTREAMS: upstreams([
          { id: "a", url: simBase(0) },
          { id: "a", url: simBase(1) },
        ]),
      },
      k.key,
      chatBody("x"),
    );
    expect(await dup.text()).toContain("account ids must be unique");
  });
});

describe("retries before the first byte", () => {
  it("retries a 1305 at the first account on the second: the client sees one clean answer", async () => {
    const a = `a${uid()}`,
      b = `b${uid()}`;
    await sim(0, { fault: { controls: "error=1305" } });
    await sim(1);
    // The first account is preferred (weight) while both are idle.
    const vars = {
      GLM_UPSTREAMS: upstreams([
        { id: a, url: simBase(0), weight: 2 },
        { id: b, url: simBase(1) },
      ]),
    };
    const k = await createKey();
    const res = await chatVia(vars, k.key, chatBody("hello", { request_id: "r1305" }));
    expect(res.status).toBe(200);
    expect(res.headers.get("x-upstream-attempts")).toBe("2");
    expect(res.headers.get("x-upstream-model")).toBe("glm-4-flash-250414");
    const body = (await res.json()) as { choices: unknown[] };
    expect(body.choices).toHaveLength(1);
    expect((await stats(0)).total).toBe(1);
    expect((await stats(1)).completed).toBe(1);
    // Both attempts are in the ledger; the refused one is not billed.
    const recs = (await records(vars, k.id))
      .filter((r) => r.request_id === "r1305")
      .sort((x, y) => x.attempt - y.attempt);
    expect(recs.map((r) => [r.attempt, r.account, r.status])).toEqual([
      [1, a, 429],
      [2, b, 200],
    ]);
    expect(recs[0]!.cost_cny).toBe(0);
  });

  it("a refused connection costs one attempt, then the account's circuit skips it, for every key", async () => {
    const a = `a${uid()}`,
      b = `b${uid()}`;
    await sim(1);
    const vars = {
      GLM_UPSTREAMS: upstreams([
        { id: a, url: DEAD, weight: 2 },
        { id: b, url: simBase(1) },
      ]),
      UPSTREAM_CIRCUIT_FAILURES: "1",
    };
    const k1 = await createKey();
    const first = await chatVia(vars, k1.key, chatBody("first"));
    expect(first.status).toBe(200);
    expect(first.headers.get("x-upstream-attempts")).toBe("2");
    await first.text();
    // The failure reached the dead account's guard, which opened its circuit.
    const view = await waitFor(
      async () =>
        (await (await adminVia(vars, "/upstreams")).json()) as {
          accounts: {
            id: string;
            models: {
              model: string;
              circuit: { state: string };
              recent_failures: number;
              limit: number;
              in_flight: number;
            }[];
          }[];
        },
      (v) =>
        v.accounts.find((x) => x.id === a)?.models.find((m) => m.model === "glm-4-flash-250414")?.circuit.state ===
        "open",
    );
    const dead = view.accounts.find((x) => x.id === a)!.models.find((m) => m.model === "glm-4-flash-250414")!;
    expect(dead).toMatchObject({ circuit: { state: "open" }, recent_failures: 1, limit: 3000 });
    expect(JSON.stringify(view)).not.toContain("secret-");
    // From now on no request tries it: not this key's, nor a key that never met the dead account.
    const k2 = await createKey();
    const started = Date.now();
    for (const key of [k1.key, k2.key, k1.key]) {
      const res = await chatVia(vars, key, chatBody("again"));
      expect(res.status).toBe(200);
      expect(res.headers.get("x-upstream-attempts")).toBe("1");
      await res.text();
    }
    expect(Date.now() - started).toBeLessThan(3_000);
    expect((await stats(1)).completed).toBe(4);
  });

  it("never retries after the first byte: a stream that breaks mid-way ends with the in-band error", async () => {
    const a = `a${uid()}`,
      b = `b${uid()}`;
    await sim(0);
    await sim(1);
    const vars = {
      GLM_UPSTREAMS: upstreams([
        { id: a, url: simBase(0) },
        { id: b, url: simBase(1) },
      ]),
    };
    const k = await createKey();
    const res = await chatVia(vars, k.key, chatBody("break [[sim: tokens=20 break_after=3]]", { stream: true }));
    expect(res.status).toBe(200);
    expect(res.headers.get("x-upstream-attempts")).toBe("1");
    const events = sseData(await res.text());
    expect(events.at(-1)).toContain('"error"');
    expect(events).not.toContain("[DONE]");
    expect((await stats(0)).total + (await stats(1)).total).toBe(1);
  });

  it("falls back to the next model when the requested one fails for good, answering with its name and price", async () => {
    const a = `a${uid()}`;
    await sim(2, { fault: { controls: "error=500", models: ["glm-4-plus"] } });
    const vars = { GLM_UPSTREAMS: upstreams([{ id: a, url: simBase(2) }]), UPSTREAM_MAX_ATTEMPTS: "2" };
    for (const how of ["header", "key default"] as const) {
      const k = how === "header" ? await createKey() : await createKey({ fallback_models: ["glm-4-flash-250414"] });
      const rid = `fb-${uid()}`;
      const res = await chatVia(
        vars,
        k.key,
        chatBody("fall back", { model: "glm-4-plus", request_id: rid }),
        how === "header" ? { "x-fallback-models": "glm-4-flash-250414" } : {},
      );
      expect(res.status).toBe(200);
      expect(res.headers.get("x-upstream-model")).toBe("glm-4-flash-250414");
      expect(res.headers.get("x-upstream-attempts")).toBe("3");
      const body = (await res.json()) as { model: string; usage: { prompt_tokens: number; completion_tokens: number } };
      expect(body.model).toBe("glm-4-flash-250414");
      const flash = DEFAULT_CATALOG.models.find((m) => m.id === "glm-4-flash-250414")!;
      const expected = costNano(flash.pricing, { ...body.usage, cached_tokens: 0 }) / 1e9;
      expect(Number(res.headers.get("x-cost-cny"))).toBeCloseTo(expected, 9);
      const recs = (await records(vars, k.id))
        .filter((r) => r.request_id === rid)
        .sort((x, y) => x.attempt - y.attempt);
      expect(recs.map((r) => [r.attempt, r.model, r.status])).toEqual([
        [1, "glm-4-plus", 500],
        [2, "glm-4-plus", 500],
        [3, "glm-4-flash-250414", 200],
      ]);
      expect(recs[2]!.cost_cny).toBeCloseTo(expected, 9);
    }
  });
});

describe("the bound at each account", () => {
  it("never has more in flight at a simulator than its account's tier allows, under a burst four times the pool", async () => {
    const a = `a${uid()}`,
      b = `b${uid()}`;
    await sim(0);
    await sim(1);
    // glm-4-airx at tier V0: 5 per account, 10 for the pool. The simulators themselves allow 50 (V3).
    const vars = {
      GLM_UPSTREAMS: upstreams([
        { id: a, url: simBase(0), tier: "V0" },
        { id: b, url: simBase(1), tier: "V0" },
      ]),
    };
    const keys = await Promise.all(Array.from({ length: 4 }, () => createKey({ tier: "V1" })));
    const results = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const res = await chatVia(
          vars,
          keys[i % 4]!.key,
          chatBody(`burst ${i} [[sim: tokens=10 delay=20]]`, { model: "glm-4-airx", stream: true }),
        );
        await res.text();
        return res.status;
      }),
    );
    const ok = results.filter((s) => s === 200).length;
    expect(results.every((s) => s === 200 || s === 429)).toBe(true);
    const [s0, s1] = [await stats(0), await stats(1)];
    expect(s0.by_model["glm-4-airx"]?.max_in_flight ?? 0).toBeLessThanOrEqual(5);
    expect(s1.by_model["glm-4-airx"]?.max_in_flight ?? 0).toBeLessThanOrEqual(5);
    // Both accounts were used, and the pool admitted more than one account could.
    expect(s0.total).toBeGreaterThan(0);
    expect(s1.total).toBeGreaterThan(0);
    expect(ok).toBeGreaterThan(5);
    expect(s0.total + s1.total).toBe(ok);
  });
});

describe("a sharded guard", () => {
  function model(id: string, limit: number): ModelEntry {
    return { ...DEFAULT_CATALOG.models[0]!, id, concurrency: { V0: limit, V1: 1000, V2: 1000, V3: 1000 } };
  }

  it("splits the limit exactly and admits exactly the limit under a burst, leaving no slot leaked", async () => {
    const m = model(`sharded-${uid()}`, 7);
    const pools = poolsFor([{ id: `s${uid()}`, key: "x.y", tier: "V0", baseUrl: "", weight: 1 }], m, 3);
    expect(pools.map((p) => p.limit)).toEqual([3, 2, 2]);
    const keys = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const k = await createKey({ tier: "V1" });
        const [id, secret] = k.key.split(".");
        return { kind: "key" as const, keyId: id!, secretHash: await sha256Hex(secret!) };
      }),
    );
    const results = await Promise.allSettled(
      keys.flatMap((cred) =>
        Array.from({ length: 8 }, () =>
          acquireSlot(env, { cred, model: m, pools, circuit: CIRCUIT, queueTimeoutMs: 0 }),
        ),
      ),
    );
    const admitted = results.flatMap((r) => (r.status === "fulfilled" ? [r.value as Slot] : []));
    for (const r of results) if (r.status === "rejected") expect((r.reason as GatewayError).status).toBe(429);
    expect(admitted.length).toBe(7);
    const leased = async () =>
      Promise.all(pools.map(async (p) => (await guardStub(env, p.name).inFlight())[p.name] ?? 0));
    const held = await leased();
    held.forEach((n, i) => expect(n).toBeLessThanOrEqual(pools[i]!.limit));
    expect(held.reduce((x, y) => x + y, 0)).toBe(7);
    await Promise.all(admitted.map((s) => s.release()));
    const after = await waitFor(leased, (ns) => ns.every((n) => n === 0), IDLE_RETURN_MS + 3_000);
    expect(after).toEqual([0, 0, 0]);
  });
});

/** The simulator's request log, oldest first (received_at: when each request arrived). */
async function simLog(
  i: number,
): Promise<{ seq: number; received_at: number; status: number; ended: string | null }[]> {
  const body = (await (await fetch(`${SIMS[i]}/_sim/requests?limit=100`)).json()) as unknown;
  const list = (Array.isArray(body) ? body : (body as { data: unknown[] }).data) as {
    seq: number;
    received_at: number;
    status: number;
    ended: string | null;
  }[];
  return [...list].sort((x, y) => x.seq - y.seq);
}

type UpstreamsView = {
  accounts: {
    id: string;
    models: { model: string; circuit: { state: string; retry_at?: string | number }; recent_failures: number }[];
  }[];
};

describe("timeouts, Retry-After and the deadline", () => {
  it("retries a header timeout at one account on another: one clean answer, and the ledger shows the timed-out attempt", async () => {
    const a = `a${uid()}`,
      b = `b${uid()}`;
    // The first account accepts the connection and never sends headers.
    await sim(0, { fault: { controls: "hang" } });
    await sim(1);
    const vars = {
      GLM_UPSTREAMS: upstreams([
        { id: a, url: simBase(0), weight: 2 },
        { id: b, url: simBase(1) },
      ]),
      UPSTREAM_TIMEOUT_MS: "1000",
    };
    const k = await createKey();
    const res = await chatVia(vars, k.key, chatBody("are you there", { request_id: "rtimeout" }));
    expect(res.status).toBe(200);
    expect(res.headers.get("x-upstream-attempts")).toBe("2");
    const body = (await res.json()) as { choices: { message: { content: string } }[] };
    expect(body.choices).toHaveLength(1);
    expect(body.choices[0]!.message.content.length).toBeGreaterThan(0);
    expect((await stats(0)).total).toBe(1);
    expect((await stats(1)).completed).toBe(1);
    const recs = (
      await waitFor(
        () => records(vars, k.id),
        (r) => r.filter((x) => x.request_id === "rtimeout").length === 2,
      )
    )
      .filter((r) => r.request_id === "rtimeout")
      .sort((x, y) => x.attempt - y.attempt);
    expect(recs.map((r) => [r.attempt, r.account, r.ended])).toEqual([
      [1, a, "timeout"],
      [2, b, "completed"],
    ]);
    expect(recs[1]!.status).toBe(200);
    // GLM never answered the first attempt: it is recorded, not billed.
    expect(recs[0]!.cost_cny).toBe(0);
  });

  it("waits at least GLM's Retry-After before retrying on the same account", async () => {
    const a = `a${uid()}`;
    await sim(0, { fault: { controls: "error=1305; retry_after=1" } });
    const vars = { GLM_UPSTREAMS: upstreams([{ id: a, url: simBase(0) }]), UPSTREAM_MAX_ATTEMPTS: "2" };
    const k = await createKey();
    const res = await chatVia(vars, k.key, chatBody("busy hour"));
    expect(res.status).toBe(429);
    expect(res.headers.get("x-upstream-attempts")).toBe("2");
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("1305");
    const log = await simLog(0);
    expect(log).toHaveLength(2);
    // Without Retry-After the first backoff is 125–250 ms; with it, at least the second GLM asked for.
    expect(log[1]!.received_at - log[0]!.received_at).toBeGreaterThanOrEqual(1000);
  });

  it("does not wait for a Retry-After beyond the caller's deadline: the client gets the error at once", async () => {
    const a = `a${uid()}`;
    await sim(0, { fault: { controls: "error=1305; retry_after=60" } });
    const vars = { GLM_UPSTREAMS: upstreams([{ id: a, url: simBase(0) }]), UPSTREAM_DEADLINE_MS: "10000" };
    const k = await createKey();
    const started = Date.now();
    const res = await chatVia(vars, k.key, chatBody("busy for a minute"));
    const took = Date.now() - started;
    expect(res.status).toBe(429);
    expect(res.headers.get("x-upstream-attempts")).toBe("1");
    await res.text();
    // One attempt, and the answer came before the deadline (waiting the 60 s would have outlived it).
    expect(await simLog(0)).toHaveLength(1);
    expect(took).toBeLessThan(10_000);
  });
});

describe("the half-open probe", () => {
  it("lets exactly one probe through after the cooldown: a failed probe reopens the circuit, a successful one closes it", async () => {
    const a = `a${uid()}`,
      b = `b${uid()}`;
    await sim(2, { fault: { controls: "error=500" } });
    await sim(1);
    const vars = {
      GLM_UPSTREAMS: upstreams([
        { id: a, url: simBase(2), weight: 2 },
        { id: b, url: simBase(1) },
      ]),
      UPSTREAM_CIRCUIT_FAILURES: "1",
      // Long enough for each burst to fit in one cooldown. (Slots a key took at the failing account before its
      // circuit opened no longer matter here: a key gives them back when it hears the circuit opened —
      // test/limiter-circuit.test.ts.)
      UPSTREAM_CIRCUIT_COOLDOWN_MS: String(IDLE_RETURN_MS + 1000),
    };
    const FLASH = "glm-4-flash-250414";
    const circuitOf = async () => {
      const v = (await (await adminVia(vars, "/upstreams")).json()) as UpstreamsView;
      return v.accounts.find((x) => x.id === a)!.models.find((m) => m.model === FLASH)!.circuit;
    };
    const retryAtMs = (c: { retry_at?: string | number }) =>
      typeof c.retry_at === "number" ? c.retry_at : Date.parse(String(c.retry_at));
    // A burst comes from as many keys as requests: each key's object asks the guards for itself.
    const burst = async (n: number) => {
      const keys = await Promise.all(Array.from({ length: n }, () => createKey()));
      const rs = await Promise.all(keys.map((k, i) => chatVia(vars, k.key, chatBody(`burst ${i}`))));
      for (const r of rs) {
        expect(r.status).toBe(200);
        await r.text();
      }
    };

    // The first failure opens the circuit; the request itself is answered by the other account.
    await burst(1);
    const opened = await waitFor(circuitOf, (c) => c.state === "open");
    expect(opened.state).toBe("open");
    expect((await stats(2)).total).toBe(1);
    // While it is open, nothing goes to the failing account.
    await burst(4);
    expect((await stats(2)).total).toBe(1);

    // After the cooldown, a burst: exactly one request is the probe; it fails, and the circuit opens again.
    await new Promise((r) => setTimeout(r, Math.max(0, retryAtMs(opened) - Date.now()) + 100));
    await burst(6);
    expect((await stats(2)).total).toBe(2);
    const reopened = await waitFor(circuitOf, (c) => c.state === "open" && retryAtMs(c) > retryAtMs(opened));
    expect(reopened.state).toBe("open");
    expect(retryAtMs(reopened)).toBeGreaterThan(retryAtMs(opened));

    // The account recovers; after the next cooldown one probe succeeds and closes the circuit.
    await sim(2);
    await new Promise((r) => setTimeout(r, Math.max(0, retryAtMs(reopened) - Date.now()) + 100));
    // Requests one at a time until one is the probe (the account is the heavier one, so it comes first).
    for (let i = 0; i < 5 && (await stats(2)).total === 0; i++) await burst(1);
    expect((await stats(2)).total).toBe(1);
    const closed = await waitFor(circuitOf, (c) => c.state === "closed");
    expect(closed.state).toBe("closed");
    expect((await stats(2)).completed).toBe(1);
  });
});

describe("the only account for a model", () => {
  it("passes GLM's 5xx answers through rather than open its circuit; a refused connection still opens it", async () => {
    const a = `a${uid()}`,
      d = `d${uid()}`;
    await sim(2, { fault: { controls: "error=1234" } });
    const FLASH = "glm-4-flash-250414";
    const one = (id: string, url: string) => ({
      GLM_UPSTREAMS: upstreams([{ id, url }]),
      UPSTREAM_CIRCUIT_FAILURES: "1",
      UPSTREAM_MAX_ATTEMPTS: "1",
    });
    const modelView = async (vars: Record<string, string>, id: string) =>
      ((await (await adminVia(vars, "/upstreams")).json()) as UpstreamsView).accounts
        .find((x) => x.id === id)!
        .models.find((m) => m.model === FLASH)!;
    const k = await createKey();

    // Three 5xx in a row at the only account: each is GLM's own answer, none a 503 from an open circuit.
    const erring = one(a, simBase(2));
    for (let i = 0; i < 3; i++) {
      const res = await chatVia(erring, k.key, chatBody(`error ${i}`));
      expect(res.status).toBe(500);
      await res.text();
    }
    expect((await stats(2)).total).toBe(3);
    const view = await waitFor(
      () => modelView(erring, a),
      (m) => m.recent_failures === 3,
    );
    expect(view).toMatchObject({ recent_failures: 3, circuit: { state: "closed" } });

    // Unreachable, the only account's circuit opens all the same: the next caller gets a 503 at once.
    const dead = one(d, DEAD);
    const first = await chatVia(dead, k.key, chatBody("dead"));
    expect(first.status).toBe(502);
    await first.text();
    await waitFor(
      () => modelView(dead, d),
      (m) => m.circuit.state === "open",
    );
    const next = await chatVia(dead, k.key, chatBody("dead again"));
    expect(next.status).toBe(503);
    expect(next.headers.get("retry-after")).not.toBeNull();
    await next.text();
  });
});
