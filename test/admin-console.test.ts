// The admin endpoints behind the operator console: usage per day and model (JSON for the charts, CSV for
// export) and the live load snapshot (in flight per key and model and upstream, last use, today's spend).
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { KeyObject } from "../src/keys/key-object.ts";
import { admin, chat, chatBody, createKey, gw, waitFor } from "./helpers.ts";

const TODAY = new Date().toISOString().slice(0, 10);
const AIR = "glm-4-air-250414";

interface Row {
  day: string;
  model: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_cny: number;
}
interface ModelLoad {
  model: string;
  in_flight: number;
  limit: number;
}
interface KeyLoad {
  id: string;
  name: string;
  revoked_at: string | null;
  last_used_at: string | null;
  today: { cost_cny: number; tokens: number };
  models: ModelLoad[];
}
interface Load {
  at: string;
  account: { tier: string; models: ModelLoad[] };
  keys: KeyLoad[];
}

async function spend(
  key: string,
  model: string,
  tokens: number,
): Promise<{ prompt_tokens: number; completion_tokens: number }> {
  const res = await chat(key, chatBody(`spend [[sim: tokens=${tokens}]]`, { model }));
  expect(res.status).toBe(200);
  return ((await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
}

async function load(): Promise<Load> {
  const res = await admin("GET", "/load");
  expect(res.status).toBe(200);
  return (await res.json()) as Load;
}

/** Parses the export (no quoted line breaks in these tests). */
function parseCsv(text: string): string[][] {
  return text
    .trimEnd()
    .split("\r\n")
    .map((line) => [...line.matchAll(/("(?:[^"]|"")*"|[^,]*)(?:,|$)/g)].map((m) => m[1]!).slice(0, -1));
}

describe("GET /admin/usage by day and model", () => {
  it("adds totals per day and model to the JSON report, summing to the report's totals", async () => {
    const k = await createKey({ tier: "V3" });
    const plus = [await spend(k.key, "glm-4-plus", 7), await spend(k.key, "glm-4-plus", 9)];
    const air = await spend(k.key, "glm-4-air-250414", 5);
    const report = (await (await admin("GET", `/usage?key_id=${k.id}`)).json()) as { totals: Row; by_day_model: Row[] };
    expect(report.by_day_model.map((r) => [r.day, r.model, r.requests])).toEqual([
      [TODAY, "glm-4-air-250414", 1],
      [TODAY, "glm-4-plus", 2],
    ]);
    const plusRow = report.by_day_model[1]!;
    expect(plusRow.completion_tokens).toBe(plus[0]!.completion_tokens + plus[1]!.completion_tokens);
    const plusTokens = plus.reduce((n, u) => n + u.prompt_tokens + u.completion_tokens, 0);
    expect(plusRow.cost_cny).toBeCloseTo((plusTokens * 5) / 1e6, 9);
    expect(report.by_day_model[0]!.cost_cny).toBeCloseTo(((air.prompt_tokens + air.completion_tokens) * 0.5) / 1e6, 9);
    expect(report.totals.requests).toBe(3);
    expect(report.totals.cost_cny).toBeCloseTo(
      report.by_day_model.reduce((s, r) => s + r.cost_cny, 0),
      9,
    );
  });

  it("exports one CSV row per day, key and model, with exact costs and quoted names", async () => {
    const a = await createKey({ name: 'team "a", web', tier: "V3" });
    const b = await createKey({ name: "=HYPERLINK(1)", tier: "V3" });
    const ua = await spend(a.key, "glm-4-plus", 11);
    await spend(a.key, "glm-4-flash-250414", 3);
    await spend(b.key, "glm-4-plus", 4);

    const res = await admin("GET", "/usage?format=csv");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    expect(res.headers.get("content-disposition")).toMatch(
      /^attachment; filename="glm-edge-usage-\d{4}-\d{2}-\d{2}-to-\d{4}-\d{2}-\d{2}\.csv"$/,
    );
    const text = await res.text();
    const [header, ...rows] = parseCsv(text);
    expect(header).toEqual([
      "day",
      "key_id",
      "key_name",
      "model",
      "requests",
      "prompt_tokens",
      "completion_tokens",
      "cached_tokens",
      "cost_cny",
      "estimated",
      "errors",
      "incomplete",
    ]);
    const mine = rows.filter((r) => r[1] === a.id || r[1] === b.id);
    expect(mine.map((r) => [r[0], r[1], r[3], r[4]]).sort()).toEqual(
      [
        [TODAY, a.id, "glm-4-flash-250414", "1"],
        [TODAY, a.id, "glm-4-plus", "1"],
        [TODAY, b.id, "glm-4-plus", "1"],
      ].sort(),
    );
    const aPlus = mine.find((r) => r[1] === a.id && r[3] === "glm-4-plus")!;
    expect(aPlus[2]).toBe('"team ""a"", web"');
    expect(aPlus[5]).toBe(String(ua.prompt_tokens));
    // 5 CNY per million tokens, printed with every decimal and never as 1e-7.
    const nano = (ua.prompt_tokens + ua.completion_tokens) * 5000;
    expect(aPlus[8]).toBe(String(nano / 1e9));
    expect(aPlus[8]).not.toContain("e");
    // A name a spreadsheet would evaluate is neutralised.
    expect(mine.find((r) => r[1] === b.id)![2]).toBe("'=HYPERLINK(1)");
    // Sorted by day, then key, then model.
    const order = rows.map((r) => `${r[0]} ${r[1]} ${r[3]}`);
    expect(order).toEqual([...order].sort());

    const one = parseCsv(await (await admin("GET", `/usage?format=csv&key_id=${b.id}`)).text());
    expect(one.slice(1).map((r) => r[1])).toEqual([b.id]);
    const empty = await (await admin("GET", "/usage?format=csv&from=2020-01-01&to=2020-01-31")).text();
    expect(empty).toBe(header!.join(",") + "\r\n");
  });

  it("refuses an unknown format, and callers without the admin token", async () => {
    const bad = await admin("GET", "/usage?format=xml");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toContain("format");
    expect((await gw("/admin/usage?format=csv")).status).toBe(401);
  });

  it("answers 404 for a key_id with no key behind it, as JSON and as CSV", async () => {
    for (const format of ["json", "csv"]) {
      const res = await admin("GET", `/usage?key_id=${"ab".repeat(16)}&format=${format}`);
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: "404", message: "no such key" } });
    }
  });
});

describe("GET /admin/load", () => {
  it("shows a key's requests in flight against its limit, and the upstream account's, while they run", async () => {
    const k = await createKey({ name: "load", tier: "V0", max_concurrency: 2 });
    const before = (await load()).keys.find((x) => x.id === k.id)!;
    expect(before).toMatchObject({ name: "load", last_used_at: null, today: { cost_cny: 0, tokens: 0 } });
    // Tier V0 allows 30 in flight for air and 5 for airx; the key's max_concurrency lowers both to 2.
    expect(before.models.find((m) => m.model === AIR)).toEqual({ model: AIR, in_flight: 0, limit: 2 });
    expect(before.models.find((m) => m.model === "glm-4-airx")?.limit).toBe(2);

    const ac = new AbortController();
    const res = await chat(
      k.key,
      chatBody("hold [[sim: tokens=400 delay=20]]", { stream: true, model: AIR }),
      {},
      ac.signal,
    );
    const reader = res.body!.getReader();
    await reader.read();
    const during = await load();
    expect(during.keys.find((x) => x.id === k.id)!.models.find((m) => m.model === AIR)).toEqual({
      model: AIR,
      in_flight: 1,
      limit: 2,
    });
    expect(during.account.tier).toBe("V0");
    const upstream = during.account.models.find((m) => m.model === AIR)!;
    expect(upstream.limit).toBe(30);
    expect(upstream.in_flight).toBeGreaterThanOrEqual(1);
    ac.abort();
    await reader.cancel().catch(() => undefined);

    const after = await waitFor(load, (l) => l.keys.find((x) => x.id === k.id)!.models.every((m) => m.in_flight === 0));
    const key = after.keys.find((x) => x.id === k.id)!;
    expect(key.models.every((m) => m.in_flight === 0)).toBe(true);
    expect(Date.now() - Date.parse(key.last_used_at!)).toBeLessThan(60_000);
    expect(key.today.tokens).toBeGreaterThan(0);
    expect(key.today.cost_cny).toBeGreaterThan(0);
  });

  it("lists revoked keys as revoked, and is admin-only", async () => {
    const k = await createKey({ name: "gone" });
    await admin("DELETE", `/keys/${k.id}`);
    expect((await load()).keys.find((x) => x.id === k.id)?.revoked_at).toEqual(expect.any(String));
    expect((await gw("/admin/load", { headers: { authorization: `Bearer ${k.key}` } })).status).toBe(401);
  });

  it("reports today's spend exactly as the budget check counts it", async () => {
    const k = await createKey({ tier: "V3", daily_budget_cny: 1 });
    const u = await spend(k.key, "glm-4-plus", 12);
    const today = (await load()).keys.find((x) => x.id === k.id)!.today;
    expect(today.tokens).toBe(u.prompt_tokens + u.completion_tokens);
    expect(today.cost_cny).toBe(((u.prompt_tokens + u.completion_tokens) * 5000) / 1e9);
  });

  it("keeps the last use beyond the 8 days of per-request rows, and knows it for rows recorded before it was kept", async () => {
    const k = await createKey({ tier: "V3" });
    await spend(k.key, "glm-4-plus", 3);
    const lastUsed = async () => (await load()).keys.find((x) => x.id === k.id)!.last_used_at;
    const first = await waitFor(lastUsed, (v) => v !== null);
    const stub = env.KEYS.get(env.KEYS.idFromName(k.id));
    // The per-request rows pruned (as after 8 days): the last use stays.
    await runInDurableObject(stub, (_o: KeyObject, state) => void state.storage.sql.exec("DELETE FROM usage_requests"));
    expect(await lastUsed()).toBe(first);
    // A key whose rows predate the kept value: the newest request row answers.
    await spend(k.key, "glm-4-plus", 3);
    const newest = await waitFor(lastUsed, (v) => v !== first);
    await runInDurableObject(stub, (_o: KeyObject, state) => void state.storage.sql.exec("DELETE FROM usage_last"));
    expect(await lastUsed()).toBe(newest);
  });
});
