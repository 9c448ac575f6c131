// The catalog: its cache paths in front of KV (cold, warm, stale refresh, KV failure), admin writes and
// their validation, /v1/models, and the catalog as the source of limits and prices.
import { env } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_CATALOG } from "../src/catalog/default.ts";
import { CATALOG_KV_KEY, CatalogCache, FRESH_MS } from "../src/catalog/store.ts";
import type { Catalog } from "../src/catalog/schema.ts";
import { admin, chat, chatBody, createKey, gw } from "./helpers.ts";

function ctxCollector() {
  const pending: Promise<unknown>[] = [];
  return { ctx: { waitUntil: (p: Promise<unknown>) => void pending.push(p) }, settle: () => Promise.all(pending) };
}

function countingEnv(fail = false) {
  let gets = 0;
  const kv = {
    get: (...args: Parameters<KVNamespace["get"]>) => {
      gets++;
      if (fail) return Promise.reject(new Error("KV is down"));
      return (env.KV.get as (...a: unknown[]) => Promise<unknown>)(...args);
    },
    put: env.KV.put.bind(env.KV),
  };
  return { env: { ...env, KV: kv as unknown as KVNamespace }, gets: () => gets };
}

// Each test has its own cache: the app's shared one also serves requests from other test files.
let cache: CatalogCache;
beforeEach(() => {
  cache = new CatalogCache(null);
});

describe("catalog cache", () => {
  it("cold: seeds KV with the bundled default on first use", async () => {
    await env.KV.delete(CATALOG_KV_KEY);
    cache = new CatalogCache(null);
    const { ctx, settle } = ctxCollector();
    const view = await cache.get(env, ctx);
    expect(view.source).toBe("default");
    expect(view.byId.get("glm-4-plus")?.pricing.input).toBe(5);
    await settle();
    expect(await env.KV.get(CATALOG_KV_KEY, "json")).toEqual(DEFAULT_CATALOG);
  });

  it("warm: served from memory without a KV read", async () => {
    const c = countingEnv();
    const { ctx } = ctxCollector();
    const now = Date.now();
    await cache.get(c.env, ctx, now);
    await cache.get(c.env, ctx, now + 10);
    await cache.get(c.env, ctx, now + FRESH_MS - 1);
    expect(c.gets()).toBe(1);
  });

  it("stale: answers from memory at once and refreshes in waitUntil", async () => {
    const changed: Catalog = { ...DEFAULT_CATALOG, version: 99, models: DEFAULT_CATALOG.models.slice(0, 2) };
    await env.KV.put(CATALOG_KV_KEY, JSON.stringify(DEFAULT_CATALOG));
    const c = countingEnv();
    const { ctx, settle } = ctxCollector();
    const now = Date.now();
    expect((await cache.get(c.env, ctx, now)).catalog.version).toBe(DEFAULT_CATALOG.version);
    await env.KV.put(CATALOG_KV_KEY, JSON.stringify(changed));
    const stale = await cache.get(c.env, ctx, now + FRESH_MS + 1);
    expect(stale.catalog.version).toBe(DEFAULT_CATALOG.version);
    await settle();
    expect((await cache.get(c.env, ctx, Date.now())).catalog.version).toBe(99);
    expect(c.gets()).toBe(2);
  });

  it("KV failure: falls back to the last good copy, and logs it", async () => {
    const { ctx, settle } = ctxCollector();
    const down = countingEnv(true);
    const custom: Catalog = { ...DEFAULT_CATALOG, version: 7 };
    await env.KV.put(CATALOG_KV_KEY, JSON.stringify(custom));
    const now = Date.now();
    expect((await cache.get(env, ctx, now)).catalog.version).toBe(7);
    const stale = await cache.get(down.env, ctx, now + FRESH_MS + 1);
    expect(stale.catalog.version).toBe(7);
    await settle();
    const after = await cache.get(down.env, ctx, Date.now());
    expect(after.catalog.version).toBe(7);
    expect(after.source).toBe("last-good");
  });

  it("KV failure with no copy in memory: 503, never the bundled default over an admin's edits", async () => {
    const edited: Catalog = {
      ...DEFAULT_CATALOG,
      version: 8,
      models: DEFAULT_CATALOG.models.map((m) => (m.id === "glm-4-plus" ? { ...m, status: "disabled" as const } : m)),
    };
    await env.KV.put(CATALOG_KV_KEY, JSON.stringify(edited));
    const { ctx } = ctxCollector();
    const err = await cache.get(countingEnv(true).env, ctx).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 503, code: "503" });
    // Nothing was cached or written: once KV answers again, the admin's catalog is what is served.
    const view = await cache.get(env, ctx);
    expect(view.catalog.version).toBe(8);
    expect(view.byId.get("glm-4-plus")?.status).toBe("disabled");
    expect(await env.KV.get(CATALOG_KV_KEY, "json")).toEqual(edited);
    await env.KV.put(CATALOG_KV_KEY, JSON.stringify(DEFAULT_CATALOG));
  });

  it("an invalid stored catalog is not replaced by the default either", async () => {
    await env.KV.put(CATALOG_KV_KEY, JSON.stringify({ version: "broken" }));
    const { ctx, settle } = ctxCollector();
    await expect(cache.get(env, ctx)).rejects.toMatchObject({ status: 503 });
    await settle();
    expect(await env.KV.get(CATALOG_KV_KEY, "json")).toEqual({ version: "broken" });
    await env.KV.put(CATALOG_KV_KEY, JSON.stringify(DEFAULT_CATALOG));
  });

  it("an edge-cached 'no catalog' is confirmed by an uncached read before the default is written", async () => {
    const edited: Catalog = { ...DEFAULT_CATALOG, version: 9 };
    await env.KV.put(CATALOG_KV_KEY, JSON.stringify(edited));
    // KV's edge cache still remembers "no catalog" from before the admin's first write.
    const staleEdge = {
      get: (key: string, opts: { cacheTtl?: number }) =>
        opts.cacheTtl !== undefined ? Promise.resolve(null) : env.KV.get(key, "json"),
      put: env.KV.put.bind(env.KV),
    };
    const { ctx, settle } = ctxCollector();
    const view = await new CatalogCache(30).get({ ...env, KV: staleEdge as unknown as KVNamespace }, ctx);
    await settle();
    expect(view.catalog.version).toBe(9);
    expect(await env.KV.get(CATALOG_KV_KEY, "json")).toEqual(edited);
    await env.KV.put(CATALOG_KV_KEY, JSON.stringify(DEFAULT_CATALOG));
  });
});

describe("admin catalog", () => {
  it("validates a replacement", async () => {
    const bad = await admin("PUT", "/catalog", { version: 1, updated_at: "x", models: [] });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: "1214", message: expect.stringContaining("models") } });
    const dup = await admin("PUT", "/catalog", {
      ...DEFAULT_CATALOG,
      models: [DEFAULT_CATALOG.models[0], DEFAULT_CATALOG.models[0]],
    });
    expect(dup.status).toBe(400);
    const negative = await admin("PATCH", "/catalog/models/glm-4-plus", { pricing: { input: -1 } });
    expect(negative.status).toBe(400);
    const unknown = await admin("PATCH", "/catalog/models/glm-9", { status: "disabled" });
    expect(unknown.status).toBe(404);
    const extra = await admin("PATCH", "/catalog/models/glm-4-plus", { colour: "red" });
    expect(extra.status).toBe(400);
  });

  it("a price change applies to the next request; a request in flight keeps its price", async () => {
    const k = await createKey({ tier: "V3" });
    await admin("PUT", "/catalog", DEFAULT_CATALOG);
    const inflight = await chat(
      k.key,
      chatBody("old price [[sim: tokens=10 delay=100]]", { model: "glm-4-air-250414", stream: true }),
    );
    const reader = inflight.body!.getReader();
    await reader.read();
    const patched = await admin("PATCH", "/catalog/models/glm-4-air-250414", { pricing: { input: 100, output: 200 } });
    expect(patched.status).toBe(200);
    const models = (await (await gw("/v1/models/glm-4-air-250414")).json()) as {
      pricing: { input: number; output: number };
    };
    expect(models.pricing).toMatchObject({ input: 100, output: 200 });
    const plain = await chat(k.key, chatBody("new price [[sim: tokens=10]]", { model: "glm-4-air-250414" }));
    const usage = ((await plain.json()) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
    expect(Number(plain.headers.get("x-cost-cny"))).toBeCloseTo(
      (usage.prompt_tokens * 100 + usage.completion_tokens * 200) / 1e6,
      12,
    );
    while (!(await reader.read()).done) {
      /* drain */
    }
    const recs = (await (await admin("GET", `/keys/${k.id}/requests`)).json()) as {
      data: { stream: boolean; prompt_tokens: number; completion_tokens: number; cost_cny: number }[];
    };
    const streamed = recs.data.find((r) => r.stream)!;
    // The stream started at 0.5 CNY per million tokens in and out.
    expect(streamed.cost_cny).toBeCloseTo(((streamed.prompt_tokens + streamed.completion_tokens) * 0.5) / 1e6, 12);
    await admin("PUT", "/catalog", DEFAULT_CATALOG);
  });

  it("limits come from the catalog, and a disabled model is refused", async () => {
    const k = await createKey({ tier: "V0" });
    await admin("PATCH", "/catalog/models/glm-4-plus", { concurrency: { V0: 3 } });
    const res = await chat(k.key, chatBody("x [[sim: tokens=1]]", { model: "glm-4-plus" }));
    expect(res.headers.get("x-concurrency-limit")).toBe("3");
    await admin("PATCH", "/catalog/models/glm-4-plus", { status: "disabled" });
    const off = await chat(k.key, chatBody("x", { model: "glm-4-plus" }));
    expect(off.status).toBe(400);
    expect(await off.json()).toMatchObject({ error: { code: "1211" } });
    const list = (await (await gw("/v1/models")).json()) as { data: { id: string }[] };
    expect(list.data.map((m) => m.id)).not.toContain("glm-4-plus");
    await admin("PUT", "/catalog", DEFAULT_CATALOG);
  });
});

describe("/v1/models", () => {
  it("lists models in OpenAI's shape with GLM's limits and prices, cacheable", async () => {
    await admin("PUT", "/catalog", DEFAULT_CATALOG);
    const res = await gw("/v1/models");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toMatch(/max-age/);
    const etag = res.headers.get("etag")!;
    expect(etag).toMatch(/^".+"$/);
    const body = (await res.json()) as { object: string; data: Record<string, unknown>[] };
    expect(body.object).toBe("list");
    const plus = body.data.find((m) => m["id"] === "glm-4-plus");
    expect(plus).toEqual({
      id: "glm-4-plus",
      object: "model",
      created: expect.any(Number),
      owned_by: "zhipuai",
      context_window: 128000,
      max_output_tokens: 4096,
      pricing: { currency: "CNY", unit: "1M tokens", input: 5, output: 5, cached_input: 2.5 },
      concurrency: { V0: 50, V1: 100, V2: 300, V3: 500 },
      capabilities: { tools: true, web_search: true, json_mode: true, streaming: true },
      status: "active",
    });
    const again = await gw("/v1/models", { headers: { "if-none-match": etag } });
    expect(again.status).toBe(304);
    const glm = await gw("/api/paas/v4/models");
    expect(glm.status).toBe(200);
    const one = await gw("/v1/models/glm-4-flash-250414");
    expect(((await one.json()) as { pricing: { input: number } }).pricing.input).toBe(0);
    const missing = await gw("/v1/models/glm-9");
    expect(missing.status).toBe(404);
  });
});
