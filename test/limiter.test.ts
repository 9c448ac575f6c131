// In-flight limits per key and model, and the upstream guard: exact admission under concurrency, a slot
// released on every ending path, leases reclaimed by the alarm, renewal, the FIFO waiting line, and
// failing closed when the limiter is unreachable.
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { LeaseTable } from "../src/limiter/leases.ts";
import {
  admin,
  chat,
  chatBody,
  chatWithEnv,
  CIRCUIT,
  createKey,
  defaultPools,
  simRequests,
  simStats,
  waitFor,
} from "./helpers.ts";

async function inFlight(id: string): Promise<number> {
  const info = (await (await admin("GET", `/keys/${id}`)).json()) as { in_flight: Record<string, number> };
  return Object.values(info.in_flight).reduce((a, b) => a + b, 0);
}

const slow = (extra = "") => chatBody(`hold [[sim: tokens=4 delay=250 ${extra}]]`, { stream: true });

describe("admission", () => {
  it("admits exactly the limit when twice the limit arrive at once", async () => {
    const k = await createKey({ tier: "V0", max_concurrency: 5 });
    const res = await Promise.all(Array.from({ length: 10 }, () => chat(k.key, slow())));
    const ok = res.filter((r) => r.status === 200);
    const refused = res.filter((r) => r.status === 429);
    expect(ok.length).toBe(5);
    expect(refused.length).toBe(5);
    for (const r of refused) {
      expect(r.headers.get("retry-after")).toBe("1");
      expect(r.headers.get("x-concurrency-limit")).toBe("5");
      expect(await r.json()).toMatchObject({
        error: { code: "1302", message: expect.stringContaining("limit for this key is 5") },
      });
    }
    expect(ok.map((r) => r.headers.get("x-concurrency-in-flight")).sort()).toEqual(["1", "2", "3", "4", "5"]);
    await Promise.all(ok.map((r) => r.text()));
    await waitFor(
      () => inFlight(k.id),
      (n) => n === 0,
    );
    expect(await inFlight(k.id)).toBe(0);
  });

  it("uses the tier's limit for the model, lowered by max_concurrency", async () => {
    const v1 = await createKey({ tier: "V1" });
    const r1 = await chat(v1.key, chatBody("x [[sim: tokens=1]]", { model: "glm-4-airx" }));
    expect(r1.headers.get("x-concurrency-limit")).toBe("30");
    const capped = await createKey({ tier: "V3", max_concurrency: 2 });
    const r2 = await chat(capped.key, chatBody("x [[sim: tokens=1]]", { model: "glm-4-plus" }));
    expect(r2.headers.get("x-concurrency-limit")).toBe("2");
  });

  it("counts each model separately", async () => {
    const k = await createKey({ max_concurrency: 1 });
    const a = await chat(k.key, slow());
    const b = await chat(k.key, { ...slow(), model: "glm-4-plus" });
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    const info = (await (await admin("GET", `/keys/${k.id}`)).json()) as { in_flight: Record<string, number> };
    expect(info.in_flight).toEqual({ "glm-4-flash-250414": 1, "glm-4-plus": 1 });
    await Promise.all([a.text(), b.text()]);
  });
});

describe("release on every ending path", () => {
  it.each([
    ["normal stream end", chatBody("x [[sim: tokens=3]]", { stream: true })],
    ["plain answer", chatBody("x [[sim: tokens=3]]")],
    ["upstream error status", chatBody("x [[sim: error=500]]")],
    ["upstream 1305", chatBody("x [[sim: error=1305]]", { stream: true })],
    ["in-band upstream error", chatBody("x [[sim: tokens=5 error=1301 error_after=2]]", { stream: true })],
    ["mid-stream break", chatBody("x [[sim: tokens=9 break_after=3]]", { stream: true })],
    ["connection reset before the answer", chatBody("x [[sim: break]]")],
    ["idle timeout mid-stream", chatBody("x [[sim: tokens=9 hang_after=2]]", { stream: true })],
    ["timeout before headers", chatBody("x [[sim: hang]]")],
  ])("%s", async (_name, body) => {
    const k = await createKey({ max_concurrency: 1 });
    const res = await chat(k.key, body);
    await res.text();
    const n = await waitFor(
      () => inFlight(k.id),
      (x) => x === 0,
    );
    expect(n).toBe(0);
    // The single slot is free again: a new request is admitted.
    const next = await chat(k.key, chatBody("again [[sim: tokens=1]]"));
    expect(next.status).toBe(200);
  });

  it("a client that disconnects mid-stream", async () => {
    const k = await createKey({ max_concurrency: 1 });
    const ac = new AbortController();
    const res = await chat(k.key, chatBody("x [[sim: tokens=200 delay=20]]", { stream: true }), {}, ac.signal);
    const reader = res.body!.getReader();
    await reader.read();
    expect(await inFlight(k.id)).toBe(1);
    ac.abort();
    await reader.cancel().catch(() => undefined);
    expect(
      await waitFor(
        () => inFlight(k.id),
        (x) => x === 0,
      ),
    ).toBe(0);
  });

  it("the limiter's own exception (upstream unreachable) releases too", async () => {
    const k = await createKey({ max_concurrency: 1 });
    const res = await chatWithEnv(k.key, { GLM_BASE_URL: "http://127.0.0.1:9/api/paas/v4" });
    expect(res.status).toBe(502);
    expect(await inFlight(k.id)).toBe(0);
  });
});

describe("leases", () => {
  it("an expired lease stops counting and the alarm reclaims it", async () => {
    const k = await createKey({ max_concurrency: 1 });
    const ac = new AbortController();
    const res = await chat(k.key, chatBody("x [[sim: tokens=100 delay=50]]", { stream: true }), {}, ac.signal);
    expect(res.status).toBe(200);
    const stub = env.KEYS.get(env.KEYS.idFromName(k.id));
    // Simulate a release that never arrived: age the lease past its expiry, as if the Worker vanished.
    await runInDurableObject(stub, (_obj, state) => {
      state.storage.sql.exec("UPDATE leases SET expires_at = ?", Date.now() - 1);
    });
    expect(await inFlight(k.id)).toBe(0);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const rows = await runInDurableObject(
      stub,
      (_obj, state) => state.storage.sql.exec("SELECT COUNT(*) AS n FROM leases").one()["n"],
    );
    expect(rows).toBe(0);
    ac.abort();
    await res.body?.cancel().catch(() => undefined);
  });

  it("renewal keeps a lease alive past its first expiry; release is idempotent", async () => {
    const stub = env.GUARD.get(env.GUARD.idFromName("lease-unit"));
    await runInDurableObject(stub, async (_obj, state) => {
      let now = 1_000_000;
      const t = new LeaseTable(state.storage, () => now);
      const got = await t.acquire("m", 1, { ttlMs: 30_000 });
      expect(got.granted).toBe(true);
      if (!got.granted) return;
      now += 20_000;
      expect(t.renew(got.leaseId)).toBe(true);
      now += 20_000; // 40 s after acquire: still held thanks to the renewal
      expect(t.count("m")).toBe(1);
      expect((await t.acquire("m", 1)).granted).toBe(false);
      now += 11_000; // past the renewed expiry
      expect(t.count("m")).toBe(0);
      expect(t.renew(got.leaseId)).toBe(false);
      expect(await t.expire()).toBe(1);
      expect(t.release(got.leaseId)).toBe(false);
    });
  });

  it("concurrent acquires on one object never exceed the limit", async () => {
    const stub = env.GUARD.get(env.GUARD.idFromName("burst"));
    const results = await Promise.all(Array.from({ length: 200 }, () => stub.acquire("m", 37)));
    expect(results.filter((r) => r.granted).length).toBe(37);
    const granted = results.filter((r): r is Extract<typeof r, { granted: true }> => r.granted);
    await Promise.all(granted.map((g) => stub.release(g.leaseId)));
    await Promise.all(granted.map((g) => stub.release(g.leaseId)));
    expect(await stub.inFlight()).toEqual({});
  });
});

describe("waiting for a slot (x-queue-timeout-ms)", () => {
  it("waits first come first served, and times out with 429", async () => {
    const k = await createKey({ max_concurrency: 1 });
    const holder = await chat(k.key, chatBody("holder [[sim: tokens=3 delay=300]]", { stream: true }));
    expect(holder.status).toBe(200);
    // Each answer is read as soon as it arrives: an unread stream keeps its slot, as it should.
    const drain = async (p: Promise<Response>) => {
      const r = await p;
      await r.text();
      return r.status;
    };
    const first = drain(
      chat(k.key, chatBody("first [[sim: tokens=2 delay=200]]", { stream: true }), { "x-queue-timeout-ms": "10000" }),
    );
    await new Promise((r) => setTimeout(r, 100));
    const second = drain(
      chat(k.key, chatBody("second [[sim: tokens=1]]", { stream: true }), { "x-queue-timeout-ms": "10000" }),
    );
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    const impatient = await chat(k.key, chatBody("impatient"), { "x-queue-timeout-ms": "300" });
    expect(impatient.status).toBe(429);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    await holder.text();
    expect(await Promise.all([first, second])).toEqual([200, 200]);
    const log = await simRequests(50);
    const order = log
      .filter((r) => /^(holder|first|second)/.test(String(r["last_user_excerpt"])))
      .sort((x, y) => Number(x["seq"]) - Number(y["seq"]))
      .map((r) => String(r["last_user_excerpt"]).split(" ")[0]);
    expect(order.slice(-3)).toEqual(["holder", "first", "second"]);
  });
});

describe("upstream guard", () => {
  it("never puts more than the account tier's limit in flight upstream, across keys", async () => {
    // glm-4-airx at account tier V0 allows 5 in flight; each key alone (V3) would allow 50.
    const keys = await Promise.all([createKey({ tier: "V3" }), createKey({ tier: "V3" })]);
    const before = await simStats();
    const res = await Promise.all(
      Array.from({ length: 8 }, (_, i) => chat(keys[i % 2]!.key, { ...slow(), model: "glm-4-airx" })),
    );
    const ok = res.filter((r) => r.status === 200);
    expect(ok.length).toBe(5);
    const refused = res.filter((r) => r.status === 429);
    for (const r of refused)
      expect(await r.json()).toMatchObject({
        error: { code: "1302", message: expect.stringContaining("upstream capacity") },
      });
    await Promise.all(ok.map((r) => r.text()));
    const after = await simStats();
    expect(after.by_model["glm-4-airx"]!.max_in_flight).toBeLessThanOrEqual(5);
    expect(after.total - before.total).toBe(5);
    for (const k of keys)
      expect(
        await waitFor(
          () => inFlight(k.id),
          (n) => n === 0,
        ),
      ).toBe(0);
  });

  it("fails closed with 503 when the limiter cannot be reached", async () => {
    const k = await createKey();
    const broken = {
      idFromName: env.KEYS.idFromName.bind(env.KEYS),
      get: () => ({
        acquire: () => Promise.reject(new Error("object unreachable")),
        authenticate: () => Promise.reject(new Error("object unreachable")),
      }),
    };
    const before = (await simStats()).total;
    const res = await chatWithEnv(k.key, { KEYS: broken as unknown as typeof env.KEYS });
    expect(res.status).toBe(503);
    // (A request without content-length is authenticated before its body is read: that call fails closed too.)
    expect(await res.json()).toMatchObject({
      error: { code: "503", message: expect.stringMatching(/limiter is unavailable|could not reach the key's state/) },
    });
    expect((await simStats()).total).toBe(before);
  });
});

describe("keep-alive while the gateway waits on GLM", () => {
  it("renews both leases on a timer until stopped", async () => {
    const { acquireSlot } = await import("../src/keys/slot.ts");
    const { DEFAULT_CATALOG } = await import("../src/catalog/default.ts");
    const k = await createKey();
    const model = DEFAULT_CATALOG.models.find((m) => m.id === "glm-4-long")!;
    const [keyPart, secret] = k.key.split(".");
    const { sha256Hex } = await import("../src/auth/crypto.ts");
    const slot = await acquireSlot(env, {
      cred: { kind: "key", keyId: keyPart!, secretHash: await sha256Hex(secret!) },
      model,
      pools: defaultPools(model),
      circuit: CIRCUIT,
      queueTimeoutMs: 0,
    });
    const expiry = () =>
      runInDurableObject(env.KEYS.get(env.KEYS.idFromName(k.id)), (_o, state) =>
        Number(state.storage.sql.exec("SELECT MAX(expires_at) AS t FROM leases").one()["t"]),
      );
    const first = await expiry();
    const pending: Promise<unknown>[] = [];
    const stop = slot.keepAlive({ waitUntil: (p) => void pending.push(p) }, 50);
    await new Promise((r) => setTimeout(r, 260));
    stop();
    await Promise.all(pending);
    expect(pending.length).toBeGreaterThanOrEqual(3);
    expect(await expiry()).toBeGreaterThan(first);
    const count = pending.length;
    await new Promise((r) => setTimeout(r, 120));
    expect(pending.length).toBe(count);
    await slot.release();
    expect(await inFlight(k.id)).toBe(0);
  });
});
