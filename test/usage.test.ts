// Usage and cost: every request that reached upstream is recorded — exactly where GLM reported usage,
// estimated and flagged where it did not — and the reports and budgets are built from those records.
import { describe, expect, it } from "vitest";
import { admin, chat, chatBody, createKey, gw, waitFor } from "./helpers.ts";

interface Rec {
  request_id: string; stream: boolean; status: number; ended: string; prompt_tokens: number;
  completion_tokens: number; cached_tokens: number; cost_cny: number; estimated: boolean; model: string;
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
      const res = await chat(k.key, chatBody(`plain ${i} [[sim: tokens=${5 + i}]]`, { request_id: rid, model: "glm-4-plus" }));
      reported.set(rid, ((await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage);
    }
    for (let i = 0; i < 3; i++) {
      const rid = `stream-${i}-${crypto.randomUUID()}`;
      const res = await chat(k.key, chatBody(`stream ${i} [[sim: tokens=${8 + i}]]`, { request_id: rid, stream: true, model: "glm-4-air-250414" }));
      const events = (await res.text()).split("\n\n").filter((e) => e.startsWith("data: {"));
      reported.set(rid, (JSON.parse(events.at(-1)!.slice(6)) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage);
    }
    const ac = new AbortController();
    const aborted = await chat(k.key, chatBody("abort me [[sim: tokens=300 delay=20]]", { request_id: "aborted-1", stream: true }), {}, ac.signal);
    const reader = aborted.body!.getReader();
    await reader.read();
    await reader.read();
    ac.abort();
    await reader.cancel().catch(() => undefined);
    await (await chat(k.key, chatBody("break [[sim: tokens=30 break_after=6]]", { request_id: "broken-1", stream: true }))).text();
    await (await chat(k.key, chatBody("fail [[sim: error=500]]", { request_id: "failed-1" }))).text();

    // The failed request took three upstream attempts (UPSTREAM_MAX_ATTEMPTS): one record each.
    const recs = await waitFor(() => records(k.id), (r) => r.length === 11);
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
    for (const r of failed) expect(r).toMatchObject({ status: 500, ended: "upstream_error", prompt_tokens: 0, completion_tokens: 0, estimated: false, cost_cny: 0 });

    const report = (await (await gw("/v1/usage", { headers: { authorization: `Bearer ${k.key}` } })).json()) as {
      from: string; to: string; totals: Record<string, number>; by_day: { day: string; requests: number }[]; by_model: { model: string; requests: number }[];
    };
    const sum = (f: (r: Rec) => number) => recs.reduce((a, r) => a + f(r), 0);
    expect(report.totals).toMatchObject({
      requests: 11, prompt_tokens: sum((r) => r.prompt_tokens), completion_tokens: sum((r) => r.completion_tokens),
      estimated: 2, errors: 3, incomplete: 2,
    });
    expect(Math.abs(report.totals["cost_cny"]! - sum((r) => r.cost_cny))).toBeLessThan(1e-9);
    expect(report.by_day).toEqual([expect.objectContaining({ day: new Date().toISOString().slice(0, 10), requests: 11 })]);
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
    expect(await second.json()).toMatchObject({ error: { code: "1308", message: expect.stringMatching(/token limit.*T00:00:00Z/) } });
  });

  it("refuses with 1308 once the daily budget in CNY is spent; PATCH lifts it", async () => {
    const k = await createKey();
    // glm-4-plus at 5 CNY per million: 30 tokens cost 0.00015 CNY; then the budget is set below that.
    await (await chat(k.key, chatBody("spend [[sim: tokens=20]]", { model: "glm-4-plus" }))).text();
    await admin("PATCH", `/keys/${k.id}`, { daily_budget_cny: 0.0001 });
    const refused = await waitFor(() => chat(k.key, chatBody("x", { model: "glm-4-plus" })), (r) => r.status === 429);
    expect(await refused.json()).toMatchObject({ error: { code: "1308", message: expect.stringContaining("budget") } });
    await admin("PATCH", `/keys/${k.id}`, { daily_budget_cny: 10 });
    expect((await chat(k.key, chatBody("x [[sim: tokens=1]]", { model: "glm-4-plus" }))).status).toBe(200);
  });

  it("holds under parallel load: each request's worst case is reserved at admission, so the day never passes the budget", async () => {
    // glm-4-plus, 5 CNY per million tokens. Each request may use its prompt (~10 tokens) and max_tokens 100:
    // a worst case of about 0.00055 CNY. A budget of 0.002 CNY fits three of them at once, not four.
    const k = await createKey({ tier: "V3", daily_budget_cny: 0.002 });
    const body = (i: number) => chatBody(`parallel ${i} [[sim: tokens=100 delay=20]]`, { model: "glm-4-plus", max_tokens: 100, stream: true });
    const first = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => chat(k.key, body(i))));
    const statuses = first.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(3);
    const refused = first.find((r) => r.status === 429)!;
    expect(await refused.json()).toMatchObject({ error: { code: "1308", message: expect.stringContaining("could exceed") } });
    await Promise.all(first.filter((r) => r !== refused).map((r) => r.text()));
    // Keep going until the budget refuses everything: the recorded day never passes it.
    for (let round = 0; round < 4; round++) {
      const more = await Promise.all([0, 1, 2, 3].map((i) => chat(k.key, body(10 + round * 4 + i))));
      await Promise.all(more.map((r) => r.text()));
    }
    const report = await waitFor(
      async () => (await (await gw("/v1/usage", { headers: { authorization: `Bearer ${k.key}` } })).json()) as { totals: { cost_cny: number; requests: number } },
      () => true,
    );
    expect(report.totals.requests).toBeGreaterThanOrEqual(3);
    expect(report.totals.cost_cny).toBeLessThanOrEqual(0.002 + 1e-12);
    const info = (await (await admin("GET", `/keys/${k.id}`)).json()) as { in_flight: Record<string, number> };
    expect(Object.values(info.in_flight).every((n) => n === 0)).toBe(true);
  });
});
