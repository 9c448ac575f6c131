// Browser tokens: minted by a key on POST /v1/tokens, used like the key on the client API, bounded by
// their expiry, model list and origin, dead with the issuing key, and counted against that key.
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { sign } from "hono/jwt";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import {
  mintBrowserToken,
  TOKEN_TTL_DEFAULT_S,
  TOKEN_TTL_MAX_S,
  verifyBrowserToken,
} from "../src/auth/browser-token.ts";
import { admin, chat, chatBody, createKey, gw, sseData, waitFor } from "./helpers.ts";

interface Minted {
  token: string;
  expires_at: string;
  models: string[] | null;
  origin: string | null;
}

function mintRaw(key: string, body?: unknown, base = "/v1"): Promise<Response> {
  return gw(`${base}/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
}

async function mint(key: string, body: unknown = {}): Promise<Minted> {
  const res = await mintRaw(key, body);
  if (res.status !== 201) throw new Error(`mint: ${res.status} ${await res.text()}`);
  return (await res.json()) as Minted;
}

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await res.json()) as { error: { code: string; message: string } };
  return { status: res.status, ...body.error };
}

function summarizeWith(cred: string, body: Record<string, unknown>): Promise<Response> {
  return gw("/v1/summarize", {
    method: "POST",
    headers: { authorization: `Bearer ${cred}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

function usageOf(cred: string, headers: Record<string, string> = {}): Promise<Response> {
  return gw("/v1/usage", { headers: { authorization: `Bearer ${cred}`, ...headers } });
}

describe("minting", () => {
  it("mints a 10-minute token by default, unrestricted, not cacheable", async () => {
    const k = await createKey();
    const before = Date.now();
    const res = await mintRaw(k.key, {});
    expect(res.status).toBe(201);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const t = (await res.json()) as Minted;
    expect(t.models).toBeNull();
    expect(t.origin).toBeNull();
    expect(t.token.split(".")).toHaveLength(3);
    expect(t.token).not.toContain(k.key.split(".")[1]);
    const ttl = (Date.parse(t.expires_at) - before) / 1000;
    expect(ttl).toBeGreaterThan(TOKEN_TTL_DEFAULT_S - 2);
    expect(ttl).toBeLessThanOrEqual(TOKEN_TTL_DEFAULT_S + 1);
  });

  it("accepts a request without a body (all fields have defaults) and the GLM base path", async () => {
    const k = await createKey();
    const res = await mintRaw(k.key, undefined, "/api/paas/v4");
    expect(res.status).toBe(201);
    const t = (await res.json()) as Minted;
    expect(Date.parse(t.expires_at) - Date.now()).toBeGreaterThan((TOKEN_TTL_DEFAULT_S - 5) * 1000);
  });

  it("honours ttl_seconds up to the documented maximum", async () => {
    const k = await createKey();
    const t = await mint(k.key, { ttl_seconds: TOKEN_TTL_MAX_S });
    expect(Math.round((Date.parse(t.expires_at) - Date.now()) / 1000)).toBeGreaterThan(TOKEN_TTL_MAX_S - 5);
    for (const ttl of [0, -1, TOKEN_TTL_MAX_S + 1, 1.5, "60"]) {
      const e = await errorOf(await mintRaw(k.key, { ttl_seconds: ttl }));
      expect(e, `ttl_seconds ${JSON.stringify(ttl)}`).toMatchObject({ status: 400, code: "1214" });
      expect(e.message).toContain("ttl_seconds");
    }
  });

  it("validates models against the catalog, deduplicating", async () => {
    const k = await createKey();
    const t = await mint(k.key, { models: ["glm-4-flash-250414", "glm-4-plus", "glm-4-flash-250414"] });
    expect(t.models).toEqual(["glm-4-flash-250414", "glm-4-plus"]);
    const unknown = await errorOf(await mintRaw(k.key, { models: ["glm-4-flash-250414", "glm-9"] }));
    expect(unknown).toMatchObject({ status: 400, code: "1211" });
    expect(unknown.message).toContain("glm-9");
    expect(await errorOf(await mintRaw(k.key, { models: [] }))).toMatchObject({ status: 400, code: "1214" });
    expect(await errorOf(await mintRaw(k.key, { models: "glm-4-plus" }))).toMatchObject({ status: 400, code: "1214" });
  });

  it("validates and normalises the origin", async () => {
    const k = await createKey();
    expect((await mint(k.key, { origin: "https://App.Example.com/" })).origin).toBe("https://app.example.com");
    expect((await mint(k.key, { origin: "http://localhost:5173" })).origin).toBe("http://localhost:5173");
    for (const bad of [
      "app.example.com",
      "https://app.example.com/path",
      "https://app.example.com?x=1",
      "ftp://app.example.com",
      "https://u:p@app.example.com",
      "null",
      "",
    ]) {
      const e = await errorOf(await mintRaw(k.key, { origin: bad }));
      expect(e, `origin ${JSON.stringify(bad)}`).toMatchObject({ status: 400, code: "1214" });
      expect(e.message).toContain("origin");
    }
  });

  it("refuses unknown fields, non-JSON bodies and missing or wrong keys", async () => {
    const k = await createKey();
    expect(await errorOf(await mintRaw(k.key, { ttl: 60 }))).toMatchObject({ status: 400, code: "1214" });
    const text = await gw("/v1/tokens", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "text/plain" },
      body: "ttl=60",
    });
    expect(text.status).toBe(415);
    expect(await errorOf(await gw("/v1/tokens", { method: "POST" }))).toMatchObject({ status: 401, code: "1001" });
    expect(await errorOf(await mintRaw(`${k.id}.wrongwrongwrongwrongwrong`, {}))).toMatchObject({
      status: 401,
      code: "1000",
    });
  });

  it("refuses an origin that CORS_ORIGINS would block in every browser", async () => {
    const k = await createKey();
    const mintWith = async (origin: string) => {
      const ctx = createExecutionContext();
      const res = await createApp().fetch(
        new Request("http://gw/v1/tokens", {
          method: "POST",
          headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
          body: JSON.stringify({ origin }),
        }),
        { ...env, CORS_ORIGINS: "https://app.example.com, https://admin.example.com" },
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return res;
    };
    expect((await mintWith("https://admin.example.com")).status).toBe(201);
    const e = await errorOf(await mintWith("https://other.example.com"));
    expect(e).toMatchObject({ status: 400, code: "1214" });
    expect(e.message).toContain("CORS_ORIGINS");
  });
});

describe("using a token", () => {
  it("works like the key on chat (plain and streamed), models and summarize", async () => {
    const k = await createKey();
    const { token } = await mint(k.key);
    const plain = await chat(token, chatBody("hi [[sim: tokens=4]]"));
    expect(plain.status).toBe(200);
    expect(((await plain.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(4);
    const streamed = await chat(token, chatBody("hi [[sim: tokens=3]]", { stream: true }));
    expect(streamed.status).toBe(200);
    const events = sseData(await streamed.text());
    expect(events.at(-1)).toBe("[DONE]");
    expect(
      events
        .filter((e) => e !== "[DONE]")
        .map((e) => JSON.parse(e) as { choices: { delta: { content?: string } }[] })
        .filter((c) => c.choices[0]?.delta.content).length,
    ).toBe(3);
    expect((await gw("/v1/models", { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    const summary = await summarizeWith(token, {
      text: "The gateway streams answers to browsers.\n\nIt keeps the key on the server.",
    });
    expect(summary.status).toBe(200);
    expect(((await summary.json()) as { object: string }).object).toBe("summary");
  });

  it("keeps to its model list on summarize too", async () => {
    const k = await createKey();
    const { token } = await mint(k.key, { models: ["glm-4-plus"] });
    const refused = await summarizeWith(token, { text: "Short text.", model: "glm-4-flash-250414" });
    expect(await errorOf(refused)).toMatchObject({ status: 403 });
    const allowed = await summarizeWith(token, { text: "Short text.", model: "glm-4-plus" });
    expect(allowed.status).toBe(200);
    await allowed.text();
  });

  it("stops working at its expiry (401, code 1003)", async () => {
    const k = await createKey();
    const { token, expires_at } = await mint(k.key, { ttl_seconds: 1 });
    const models = () => summarizeWith(token, { text: "Short text." });
    expect((await models()).status).toBe(200);
    const after = await waitFor(
      () => models().then((r) => r.status),
      (s) => s === 401,
      5_000,
    );
    expect(after).toBe(401);
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(expires_at));
    expect(await errorOf(await chat(token, chatBody("late [[sim: tokens=1]]")))).toMatchObject({
      status: 401,
      code: "1003",
    });
  });

  it("keeps to its model list (403 for another model)", async () => {
    const k = await createKey();
    const { token } = await mint(k.key, { models: ["glm-4-flash-250414"] });
    expect((await chat(token, chatBody("ok [[sim: tokens=1]]"))).status).toBe(200);
    const e = await errorOf(await chat(token, chatBody("no [[sim: tokens=1]]", { model: "glm-4-plus" })));
    expect(e).toMatchObject({ status: 403 });
    expect(e.message).toContain("glm-4-plus");
  });

  it("keeps to its origin (403 without an Origin header or with another one)", async () => {
    const k = await createKey();
    const { token } = await mint(k.key, { origin: "https://app.example.com" });
    const none = await errorOf(await chat(token, chatBody("x [[sim: tokens=1]]")));
    expect(none).toMatchObject({ status: 403, code: "1000" });
    expect(none.message).toContain("https://app.example.com");
    const wrong = await errorOf(
      await chat(token, chatBody("x [[sim: tokens=1]]"), { origin: "https://evil.example.com" }),
    );
    expect(wrong).toMatchObject({ status: 403, code: "1000" });
    const right = await chat(token, chatBody("x [[sim: tokens=1]]"), { origin: "https://app.example.com" });
    expect(right.status).toBe(200);
    // CORS_ORIGINS is "*" in the tests: the browser at the token's origin may read the answer.
    expect(right.headers.get("access-control-allow-origin")).toBe("*");
  });

  it("dies with the issuing key (401 once the key is revoked)", async () => {
    const k = await createKey();
    const { token } = await mint(k.key, { ttl_seconds: 3600 });
    expect((await chat(token, chatBody("x [[sim: tokens=1]]"))).status).toBe(200);
    expect((await admin("DELETE", `/keys/${k.id}`)).status).toBe(200);
    const e = await errorOf(await chat(token, chatBody("x [[sim: tokens=1]]")));
    // The same answer as for a badly signed token: a token does not tell whether its key still exists.
    expect(e).toMatchObject({ status: 401, code: "1004" });
    expect(e.message).toContain("revoked");
    expect((await summarizeWith(token, { text: "Short text." })).status).toBe(401);
  });

  it("is refused (403, before any work) wherever the key's full authority or whole data is needed", async () => {
    const k = await createKey();
    const { token } = await mint(k.key);
    const bound = await mint(k.key, { origin: "https://app.example.com" });
    const job = (await (
      await gw("/v1/async/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
        body: JSON.stringify(chatBody("x [[sim: tokens=1]]")),
      })
    ).json()) as { id: string };
    for (const t of [token, bound.token]) {
      const auth = { authorization: `Bearer ${t}`, origin: "https://app.example.com" };
      const json = { ...auth, "content-type": "application/json" };
      const answers = [
        await usageOf(t, { origin: "https://app.example.com" }),
        await gw("/v1/async/chat/completions", {
          method: "POST",
          headers: json,
          body: JSON.stringify(chatBody("x [[sim: tokens=1]]", { callback_url: "https://example.com/hook" })),
        }),
        await gw("/api/paas/v4/async/summarize", {
          method: "POST",
          headers: json,
          body: JSON.stringify({ text: "Short text." }),
        }),
        await gw(`/v1/async-result/${job.id}`, { headers: auth }),
      ];
      for (const res of answers) {
        const e = await errorOf(res);
        expect(e, res.url).toMatchObject({
          status: 403,
          code: "1000",
          message: expect.stringContaining("a browser token cannot"),
        });
      }
    }
    // The key itself still may.
    expect((await usageOf(k.key)).status).toBe(200);
    expect((await gw(`/v1/async-result/${job.id}`, { headers: { authorization: `Bearer ${k.key}` } })).status).toBe(
      200,
    );
  });

  it("cannot mint tokens (403), even when bound to an origin, nor use /admin (401)", async () => {
    const k = await createKey();
    const { token } = await mint(k.key);
    const e = await errorOf(await mintRaw(token, {}));
    expect(e).toMatchObject({ status: 403, code: "1000" });
    expect(e.message).toContain("cannot mint");
    const bound = await mint(k.key, { origin: "https://app.example.com" });
    const e2 = await errorOf(
      await gw("/v1/tokens", {
        method: "POST",
        headers: { authorization: `Bearer ${bound.token}`, origin: "https://app.example.com" },
      }),
    );
    expect(e2).toMatchObject({ status: 403, code: "1000" });
    expect(e2.message).toContain("cannot mint");
    for (const path of ["/admin/keys", "/admin/catalog", "/admin/usage"]) {
      expect((await gw(path, { headers: { authorization: `Bearer ${token}` } })).status, path).toBe(401);
    }
  });

  it("refuses a tampered token or one signed by another key", async () => {
    const k = await createKey();
    const other = await createKey();
    const { token } = await mint(k.key);
    const [h, p, s] = token.split(".") as [string, string, string];
    const flipped = `${h}.${p}.${s.slice(0, -2)}${s.endsWith("AA") ? "BB" : "AA"}`;
    expect(await errorOf(await chat(flipped, chatBody("x")))).toMatchObject({ status: 401, code: "1004" });
    // A token of `other` whose payload claims k's id: the signature does not match k's secret.
    const foreign = (await mint(other.key)).token.split(".");
    const claimsK = `${foreign[0]}.${p}.${foreign[2]}`;
    expect(await errorOf(await chat(claimsK, chatBody("x")))).toMatchObject({ status: 401, code: "1004" });
  });
});

describe("CORS for browser tokens", () => {
  it("follows CORS_ORIGINS: the token's origin gets the CORS headers it needs, others none", async () => {
    const k = await createKey();
    const { token } = await mint(k.key, { origin: "https://app.example.com" });
    const call = async (init: RequestInit) => {
      const ctx = createExecutionContext();
      const res = await createApp().fetch(
        new Request("http://gw/v1/chat/completions", init),
        { ...env, CORS_ORIGINS: "https://app.example.com" },
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return res;
    };
    const preflight = (origin: string) =>
      call({
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization, content-type",
        },
      });
    const ok = await preflight("https://app.example.com");
    expect(ok.status).toBe(204);
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(ok.headers.get("access-control-allow-headers")).toContain("authorization");
    expect((await preflight("https://evil.example.com")).headers.get("access-control-allow-origin")).toBeNull();
    const res = await call({
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        origin: "https://app.example.com",
      },
      body: JSON.stringify(chatBody("cors [[sim: tokens=2]]")),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(res.headers.get("access-control-expose-headers")).toContain("x-request-id");
    await res.text();
  });
});

describe("a token counts against its key", () => {
  it("shares the key's concurrency limit (429 with Retry-After while the key's slot is busy)", async () => {
    const k = await createKey({ max_concurrency: 1 });
    const { token } = await mint(k.key);
    const ac = new AbortController();
    const held = await chat(k.key, chatBody("hold [[sim: tokens=200 delay=20]]", { stream: true }), {}, ac.signal);
    expect(held.status).toBe(200);
    const reader = held.body!.getReader();
    await reader.read();
    try {
      const res = await chat(token, chatBody("second [[sim: tokens=1]]"));
      const e = await errorOf(res);
      expect(e).toMatchObject({ status: 429, code: "1302" });
      expect(res.headers.get("retry-after")).toBe("1");
      expect(res.headers.get("x-concurrency-limit")).toBe("1");
    } finally {
      ac.abort();
      await reader.cancel().catch(() => undefined);
    }
    // Once the held stream is gone the token is admitted again.
    const next = await waitFor(
      () => chat(token, chatBody("third [[sim: tokens=1]]")).then(async (r) => (await r.text(), r.status)),
      (s) => s === 200,
    );
    expect(next).toBe(200);
  });

  it("is recorded in the key's usage and stopped by the key's daily token limit", async () => {
    const k = await createKey({ daily_token_limit: 60 });
    const { token } = await mint(k.key);
    // Its worst case (prompt and max_tokens) fits the limit; the next request's (no max_tokens) does not.
    const res = await chat(token, chatBody("count me [[sim: tokens=30]]", { max_tokens: 30 }));
    expect(res.status).toBe(200);
    await res.text();
    const report = await waitFor(
      () =>
        usageOf(k.key).then((r) => r.json() as Promise<{ totals: { requests: number; completion_tokens: number } }>),
      (u) => u.totals.requests === 1,
    );
    expect(report.totals).toMatchObject({ requests: 1, completion_tokens: 30 });
    // The token may not read the key's report (it shows the whole key's data).
    expect((await usageOf(token)).status).toBe(403);
    const over = await chat(token, chatBody("too much [[sim: tokens=1]]"));
    expect(await errorOf(over)).toMatchObject({ status: 429, code: "1308" });
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
  });
});

describe("verifyBrowserToken", () => {
  const secret = "a-key-secret-for-unit-tests";
  const keyId = "0123456789abcdef0123456789abcdef";

  it("accepts its own tokens and reports their restrictions", async () => {
    const { token } = await mintBrowserToken(keyId, secret, {
      ttlSeconds: 60,
      models: ["m"],
      origin: "https://a.example",
    });
    expect(await verifyBrowserToken(token, secret, "https://a.example")).toMatchObject({
      models: ["m"],
      origin: "https://a.example",
    });
    expect(await verifyBrowserToken(token, "another-secret", "https://a.example")).toMatchObject({
      status: 401,
      code: "1004",
    });
  });

  it("expires at exp, measured in seconds", async () => {
    const now = Date.now();
    const { token } = await mintBrowserToken(keyId, secret, { ttlSeconds: 10, models: null, origin: null }, now);
    expect(await verifyBrowserToken(token, secret, null, now + 9_000)).toMatchObject({ models: null, origin: null });
    expect(await verifyBrowserToken(token, secret, null, now + 10_000)).toMatchObject({ status: 401, code: "1003" });
  });

  it("refuses hand-made tokens beyond the documented limits or with malformed claims", async () => {
    const iat = Math.floor(Date.now() / 1000);
    const make = (extra: Record<string, unknown>) =>
      sign({ glm_edge_token: keyId, iat, exp: iat + 60, ...extra }, secret, "HS256");
    expect(await verifyBrowserToken(await make({ exp: iat + TOKEN_TTL_MAX_S + 60 }), secret, null)).toMatchObject({
      status: 401,
      code: "1002",
    });
    expect(await verifyBrowserToken(await make({ iat: iat + 3600, exp: iat + 3660 }), secret, null)).toMatchObject({
      status: 401,
      code: "1002",
    });
    expect(await verifyBrowserToken(await make({ exp: undefined }), secret, null)).toMatchObject({
      status: 401,
      code: "1002",
    });
    expect(await verifyBrowserToken(await make({ models: "glm-4-plus" }), secret, null)).toMatchObject({
      status: 401,
      code: "1002",
    });
    expect(await verifyBrowserToken(await make({ models: [1] }), secret, null)).toMatchObject({
      status: 401,
      code: "1002",
    });
    expect(await verifyBrowserToken(await make({ origin: 5 }), secret, null)).toMatchObject({
      status: 401,
      code: "1002",
    });
    expect(await verifyBrowserToken(await make({}), secret, null)).toMatchObject({ models: null, origin: null });
  });
});
