// Usage and cost: every request that reached upstream is recorded — exactly where GLM reported usage,
// estimated and flagged where it did not — and the reports and budgets are built from those records.
import {
  createExecutionContext,
  env,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import type { KeyObject } from "../src/keys/key-object.ts";
import type { ExactRow } from "../src/usage/rollup.ts";
import { RollupOutbox } from "../src/usage/rollup-outbox.ts";
import { ADMIN, admin, chat, chatBody, createKey, gw, waitFor } from "./helpers.ts";

interface Rec {
  request_id: string;
  stream: boolean;
  status: number;
  ended: string;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  cost_cny: number;
  estimated: boolean;
  model: string;
}

async function records(id: string): Promise<Rec[]> {
  return ((await (await admin("GET", `/keys/${id}/requests?limit=1000`)).json()) as { data: Rec[] }).data;
}

describe("usage records", () => {
  it("records a mix of plain, streamed, aborted, broken and failed requests", async () => {
    const k = await createKey({ tier: "V3" });
    const reported = new Map<string, { prompt_tokens: number; completion_tokens: number }>();
    for (let i = 0; i < 3; i++) {
      const rid = `plain-${i}-${crypto.randomUUID()}`;
      const res = await chat(
        k.key,
        chatBody(`plain ${i} [[sim: tokens=${5 + i}]]`, { request_id: rid, model: "glm-4-plus" }),
      );
      reported.set(rid, ((await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage);
    }
    for (let i = 0; i < 3; i++) {
      const rid = `stream-${i}-${crypto.randomUUID()}`;
      const res = await chat(
        k.key,
        chatBody(`stream ${i} [[sim: tokens=${8 + i}]]`, { request_id: rid, stream: true, model: "glm-4-air-250414" }),
      );
      const events = (await res.text()).split("\n\n").filter((e) => e.startsWith("data: {"));
      reported.set(
        rid,
        (JSON.parse(events.at(-1)!.slice(6)) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage,
      );
    }
    const ac = new AbortController();
    const aborted = await chat(
      k.key,
      chatBody("abort me [[sim: tokens=300 delay=20]]", { request_id: "aborted-1", stream: true }),
      {},
      ac.signal,
    );
    const reader = aborted.body!.getReader();
    await reader.read();
    await reader.read();
    ac.abort();
    await reader.cancel().catch(() => undefined);
    await (
      await chat(k.key, chatBody("break [[sim: tokens=30 break_after=6]]", { request_id: "broken-1", stream: true }))
    ).text();
    await (await chat(k.key, chatBody("fail [[sim: error=500]]", { request_id: "failed-1" }))).text();

    // The failed request took three upstream attempts (UPSTREAM_MAX_ATTEMPTS): one record each.
    const recs = await waitFor(
      () => records(k.id),
      (r) => r.length === 11,
    );
    expect(recs.length).toBe(11);
    const byId = new Map(recs.map((r) => [r.request_id, r]));
    for (const [rid, u] of reported) {
      const r = byId.get(rid)!;
      expect(r.estimated).toBe(false);
      expect(r.ended).toBe("completed");
      expect(r.prompt_tokens).toBe(u.prompt_tokens);
      expect(r.completion_tokens).toBe(u.completion_tokens);
      const price = r.model === "glm-4-plus" ? 5 : 0.5;
      expect(Math.abs(r.cost_cny - ((u.prompt_tokens + u.completion_tokens) * price) / 1e6)).toBeLessThan(1e-9);
    }
    const ab = byId.get("aborted-1")!;
    expect(ab).toMatchObject({ ended: "client_abort", estimated: true });
    expect(ab.prompt_tokens).toBeGreaterThan(0);
    expect(ab.completion_tokens).toBeGreaterThanOrEqual(1);
    const br = byId.get("broken-1")!;
    expect(br).toMatchObject({ ended: "upstream_break", estimated: true });
    expect(br.completion_tokens).toBe(6);
    expect(br.prompt_tokens).toBeGreaterThan(0);
    const failed = recs.filter((r) => r.request_id === "failed-1");
    expect(failed.map((r) => (r as Rec & { attempt: number }).attempt).sort()).toEqual([1, 2, 3]);
    for (const r of failed)
      expect(r).toMatchObject({
        status: 500,
        ended: "upstream_error",
        prompt_tokens: 0,
        completion_tokens: 0,
        estimated: false,
        cost_cny: 0,
      });

    const report = (await (await gw("/v1/usage", { headers: { authorization: `Bearer ${k.key}` } })).json()) as {
      from: string;
      to: string;
      totals: Record<string, number>;
      by_day: { day: string; requests: number }[];
      by_model: { model: string; requests: number }[];
    };
    const sum = (f: (r: Rec) => number) => recs.reduce((a, r) => a + f(r), 0);
    expect(report.totals).toMatchObject({
      requests: 11,
      prompt_tokens: sum((r) => r.prompt_tokens),
      completion_tokens: sum((r) => r.completion_tokens),
      estimated: 2,
      errors: 3,
      incomplete: 2,
    });
    expect(Math.abs(report.totals["cost_cny"]! - sum((r) => r.cost_cny))).toBeLessThan(1e-9);
    expect(report.by_day).toEqual([
      expect.objectContaining({ day: new Date().toISOString().slice(0, 10), requests: 11 }),
    ]);
    expect(report.by_model.find((m) => m.model === "glm-4-plus")?.requests).toBe(3);

    const all = (await (await admin("GET", "/usage")).json()) as { totals: { requests: number } };
    expect(all.totals.requests).toBeGreaterThanOrEqual(11);
    const one = (await (await admin("GET", `/usage?key_id=${k.id}`)).json()) as { totals: { requests: number } };
    expect(one.totals.requests).toBe(11);
  });

  it("validates the date range", async () => {
    const k = await createKey();
    const auth = { authorization: `Bearer ${k.key}` };
    expect((await gw("/v1/usage?from=2026-13-40", { headers: auth })).status).toBe(400);
    expect((await gw("/v1/usage?from=2026-02-01&to=2026-01-01", { headers: auth })).status).toBe(400);
    expect((await gw("/v1/usage?from=2020-01-01&to=2026-01-01", { headers: auth })).status).toBe(400);
    expect((await gw("/v1/usage?from=yesterday", { headers: auth })).status).toBe(400);
    const ok = await gw("/v1/usage?from=2026-01-01&to=2026-01-31", { headers: auth });
    expect(await ok.json()).toMatchObject({ from: "2026-01-01", to: "2026-01-31", totals: { requests: 0 } });
  });
});

describe("budgets", () => {
  it("refuses with 1308 once the daily token limit is reached, until UTC midnight", async () => {
    const k = await createKey({ daily_token_limit: 40 });
    // Its worst case (prompt and max_tokens) fits the limit; what it uses leaves too little for the next.
    const first = await chat(k.key, chatBody("spend [[sim: tokens=30]]", { max_tokens: 25 }));
    expect(first.status).toBe(200);
    await first.text();
    const second = await waitFor(
      () => chat(k.key, chatBody("more [[sim: tokens=1]]")),
      (r) => r.status === 429,
    );
    expect(second.status).toBe(429);
    const retry = Number(second.headers.get("retry-after"));
    expect(retry).toBeGreaterThan(0);
    expect(retry).toBeLessThanOrEqual(86_400);
    expect(await second.json()).toMatchObject({
      error: { code: "1308", message: expect.stringMatching(/token limit.*T00:00:00Z/) },
    });
  });

  it("refuses with 1308 once the daily budget in CNY is spent; PATCH lifts it", async () => {
    const k = await createKey();
    // glm-4-plus at 5 CNY per million: 30 tokens cost 0.00015 CNY; then the budget is set below that.
    await (await chat(k.key, chatBody("spend [[sim: tokens=20]]", { model: "glm-4-plus" }))).text();
    await admin("PATCH", `/keys/${k.id}`, { daily_budget_cny: 0.0001 });
    const refused = await waitFor(
      () => chat(k.key, chatBody("x", { model: "glm-4-plus" })),
      (r) => r.status === 429,
    );
    expect(await refused.json()).toMatchObject({ error: { code: "1308", message: expect.stringContaining("budget") } });
    await admin("PATCH", `/keys/${k.id}`, { daily_budget_cny: 10 });
    expect((await chat(k.key, chatBody("x [[sim: tokens=1]]", { model: "glm-4-plus" }))).status).toBe(200);
  });

  it("holds under parallel load: each request's worst case is reserved at admission, so the day never passes the budget", async () => {
    // glm-4-plus, 5 CNY per million tokens. Each request may use its prompt (~10 tokens) and max_tokens 100:
    // a worst case of about 0.00055 CNY. A budget of 0.002 CNY fits three of them at once, not four.
    const k = await createKey({ tier: "V3", daily_budget_cny: 0.002 });
    const body = (i: number) =>
      chatBody(`parallel ${i} [[sim: tokens=100 delay=20]]`, { model: "glm-4-plus", max_tokens: 100, stream: true });
    const first = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => chat(k.key, body(i))));
    const statuses = first.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(3);
    const refused = first.find((r) => r.status === 429)!;
    expect(await refused.json()).toMatchObject({
      error: { code: "1308", message: expect.stringContaining("could exceed") },
    });
    await Promise.all(first.filter((r) => r !== refused).map((r) => r.text()));
    // Keep going until the budget refuses everything: the recorded day never passes it.
    for (let round = 0; round < 4; round++) {
      const more = await Promise.all([0, 1, 2, 3].map((i) => chat(k.key, body(10 + round * 4 + i))));
      await Promise.all(more.map((r) => r.text()));
    }
    const report = await waitFor(
      async () =>
        (await (await gw("/v1/usage", { headers: { authorization: `Bearer ${k.key}` } })).json()) as {
          totals: { cost_cny: number; requests: number };
        },
      () => true,
    );
    expect(report.totals.requests).toBeGreaterThanOrEqual(3);
    expect(report.totals.cost_cny).toBeLessThanOrEqual(0.002 + 1e-12);
    const info = (await (await admin("GET", `/keys/${k.id}`)).json()) as { in_flight: Record<string, number> };
    expect(Object.values(info.in_flight).every((n) => n === 0)).toBe(true);
  });
});

describe("the admin-wide usage roll-up", () => {
  const AIR = "glm-4-air-250414";
  type Row = {
    day: string;
    model: string;
    requests: number;
    prompt_tokens: number;
    completion_tokens: number;
    cost_cny: number;
    errors: number;
  };
  type Report = { totals: Row; by_day_model: Row[]; freshness: { source: string; max_lag_seconds: number } };

  async function spendOn(key: string, model: string, tokens: number): Promise<void> {
    const res = await chat(key, chatBody(`rollup [[sim: tokens=${tokens}]]`, { model }));
    expect(res.status).toBe(200);
    await res.text();
  }

  /** GET /admin/usage on a fresh app whose KEYS and USAGE_ROLLUP bindings count the objects asked. */
  async function countedAdminUsage(
    query: string,
  ): Promise<{ res: Response; keyObjects: number; rollupObjects: number }> {
    let keyObjects = 0;
    let rollupObjects = 0;
    const counting = <T extends object>(ns: T, bump: () => void): T =>
      new Proxy(ns, {
        get(target, prop) {
          const v = Reflect.get(target, prop) as unknown;
          if (typeof v !== "function") return v;
          return (...args: unknown[]) => {
            if (prop === "get" || prop === "getByName") bump();
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
    const ctx = createExecutionContext();
    const res = await createApp().fetch(
      new Request(`http://gateway.test/admin/usage${query}`, { headers: { authorization: `Bearer ${ADMIN}` } }),
      {
        ...env,
        KEYS: counting(env.KEYS, () => keyObjects++),
        USAGE_ROLLUP: counting(env.USAGE_ROLLUP, () => rollupObjects++),
      },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    return { res, keyObjects, rollupObjects };
  }

  it("matches the keys' own reports, and reads one roll-up object per month, never a key's object", async () => {
    const keys = await Promise.all([0, 1, 2].map(() => createKey({ tier: "V3" })));
    for (const [i, k] of keys.entries()) {
      await spendOn(k.key, "glm-4-plus", 5 + i);
      await spendOn(k.key, AIR, 3 + i);
    }
    await (await chat(keys[0]!.key, chatBody("fail [[sim: error=400]]", { model: AIR }))).text();

    const perKey = await Promise.all(
      keys.map(async (k) => (await (await admin("GET", `/usage?key_id=${k.id}`)).json()) as Report),
    );
    expect(perKey.map((r) => r.freshness.source)).toEqual(["key", "key", "key"]);
    const { res, keyObjects, rollupObjects } = await countedAdminUsage("");
    expect(res.status).toBe(200);
    const all = (await res.json()) as Report;
    expect(all.freshness).toMatchObject({ source: "rollup", max_lag_seconds: 0 });
    // The default range (30 days) spans one or two months: one call each, whatever the number of keys.
    expect(keyObjects).toBe(0);
    const today = new Date();
    const start = new Date(today.getTime() - 29 * 86_400_000);
    expect(rollupObjects).toBe(start.getUTCMonth() === today.getUTCMonth() ? 1 : 2);

    // Other tests in this file spent too: compare the rows of these keys, read back as CSV per key.
    const csv = await countedAdminUsage("?format=csv");
    expect(csv.keyObjects).toBe(0);
    expect(csv.res.headers.get("x-usage-source")).toBe("rollup");
    const lines = (await csv.res.text())
      .trimEnd()
      .split("\r\n")
      .slice(1)
      .map((l) => l.split(","));
    for (const [i, k] of keys.entries()) {
      const mine = lines
        .filter((l) => l[1] === k.id)
        .map((l) => ({
          model: l[3],
          requests: Number(l[4]),
          prompt: Number(l[5]),
          completion: Number(l[6]),
          cost: l[8],
          errors: Number(l[10]),
        }));
      expect(mine).toEqual(
        perKey[i]!.by_day_model.map((r) => ({
          model: r.model,
          requests: r.requests,
          prompt: r.prompt_tokens,
          completion: r.completion_tokens,
          cost: String(Math.round(r.cost_cny * 1e9) / 1e9),
          errors: r.errors,
        })),
      );
    }
    expect(lines.filter((l) => l[1] === keys[0]!.id && l[3] === AIR)[0]![4]).toBe("2");
    // And the admin-wide JSON sums exactly what the keys report.
    const sumOf = (rs: Report[], f: (t: Row) => number) => rs.reduce((a, r) => a + f(r.totals), 0);
    const before = (await (await admin("GET", "/usage")).json()) as Report;
    await spendOn(keys[1]!.key, "glm-4-plus", 4);
    const after = (await (await admin("GET", "/usage")).json()) as Report;
    const perKeyAfter = await Promise.all(
      keys.map(async (k) => (await (await admin("GET", `/usage?key_id=${k.id}`)).json()) as Report),
    );
    expect(after.totals.requests - before.totals.requests).toBe(1);
    expect(sumOf(perKeyAfter, (t) => t.requests) - sumOf(perKey, (t) => t.requests)).toBe(1);
    expect(after.totals.prompt_tokens - before.totals.prompt_tokens).toBe(
      sumOf(perKeyAfter, (t) => t.prompt_tokens) - sumOf(perKey, (t) => t.prompt_tokens),
    );
  });

  it("counts nothing twice when rows are flushed again, and carries a renamed key's new name", async () => {
    const k = await createKey({ name: "before", tier: "V3" });
    await spendOn(k.key, "glm-4-plus", 6);
    await spendOn(k.key, "glm-4-plus", 7);
    const rowsOf = async () =>
      (await (await admin("GET", "/usage?format=csv")).text())
        .trimEnd()
        .split("\r\n")
        .slice(1)
        .map((l) => l.split(","))
        .filter((l) => l[1] === k.id);
    const first = await rowsOf();
    expect(first.map((l) => [l[2], l[4]])).toEqual([["before", "2"]]);
    // A rename sends this month's rows again (the same absolute totals): the name changes, the counts do not.
    expect((await admin("PATCH", `/keys/${k.id}`, { name: "after" })).status).toBe(200);
    const again = await rowsOf();
    expect(again.map((l) => [l[2], ...l.slice(3)])).toEqual(first.map((l) => ["after", ...l.slice(3)]));
    // The same rows sent straight to the roll-up, twice: still the same totals.
    const month = new Date().toISOString().slice(0, 7);
    const stub = env.USAGE_ROLLUP.get(env.USAGE_ROLLUP.idFromName(`usage:${month}`));
    const day = new Date().toISOString().slice(0, 10);
    const stored = (await stub.read(day, day)).rows.filter((r) => r.key_id === k.id);
    const { key_id: _, key_name: __, ...row } = stored[0]!;
    await stub.put(k.id, "after", [row]);
    await stub.put(k.id, "after", [row]);
    // An older, smaller total arriving late does not roll the row back.
    await stub.put(k.id, "after", [{ ...row, requests: 1, prompt_tokens: 1 }]);
    expect((await rowsOf()).map((l) => l.slice(2))).toEqual(again.map((l) => l.slice(2)));
  });

  it("keeps a row marked until the roll-up stored that version: a failed send is retried, a change during a send is not lost", async () => {
    const k = await createKey({ tier: "V3" });
    await spendOn(k.key, "glm-4-plus", 3);
    const stub = env.KEYS.get(env.KEYS.idFromName(k.id));
    await runInDurableObject(stub, async (_o: KeyObject, state) => {
      const outbox = new RollupOutbox(state.storage.sql);
      const day = new Date().toISOString().slice(0, 10);
      const marks = () => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM usage_rollup_dirty").one().n;
      expect(marks()).toBe(0);
      outbox.mark(day, "glm-4-plus", Date.now());
      await expect(outbox.flush(() => Promise.reject(new Error("unreachable")))).rejects.toThrow("unreachable");
      expect(marks()).toBe(1);
      const sent: ExactRow[][] = [];
      // A request recorded while the send is under way marks the row again: it stays for the next flush.
      await outbox.flush(async (_month, rows) => {
        sent.push(rows);
        outbox.mark(day, "glm-4-plus", Date.now());
      });
      expect(sent[0]!.map((r) => [r.model, r.requests])).toEqual([["glm-4-plus", 1]]);
      expect(marks()).toBe(1);
      expect(await outbox.flush(async () => undefined)).toBe(1);
      expect(marks()).toBe(0);
    });
  });

  it("with a flush delay, records reach the roll-up from the key's alarm, not in the call that records them", async () => {
    const k = await createKey({ tier: "V3" });
    const stub = env.KEYS.get(env.KEYS.idFromName(k.id));
    const day = new Date().toISOString().slice(0, 10);
    const rollup = env.USAGE_ROLLUP.get(env.USAGE_ROLLUP.idFromName(`usage:${day.slice(0, 7)}`));
    const inRollup = async () =>
      (await rollup.read(day, day)).rows.filter((r) => r.key_id === k.id).reduce((n, r) => n + r.requests, 0);
    const record = (id: string) => ({
      id,
      request_id: id,
      ts: Date.now(),
      model: "glm-4-plus",
      kind: "chat" as const,
      stream: false,
      status: 200,
      ended: "completed" as const,
      prompt_tokens: 3,
      completion_tokens: 4,
      cached_tokens: 0,
      cost_nano: 35_000,
      estimated: false,
      account: "default",
      attempt: 1,
    });
    await runInDurableObject(stub, async (o: KeyObject) => {
      // This object alone runs with a 300 ms delay (the test configuration flushes at once).
      Reflect.set(o, "env", { ...env, USAGE_ROLLUP_FLUSH_MS: "300" });
      expect(await o.record(record("r1"))).toBe(true);
      expect(await o.record(record("r2"))).toBe(true);
    });
    expect(await inRollup()).toBe(0);
    await new Promise((r) => setTimeout(r, 320));
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await inRollup()).toBe(2);
  });
});
