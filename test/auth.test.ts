// The auth matrix: every key form GLM clients send, wrong and expired credentials, revocation, and the
// separation between client keys and the admin token.
import { beforeAll, describe, expect, it } from "vitest";
import { ADMIN, admin, chat, chatBody, createKey, gw, type CreatedKey } from "./helpers.ts";

const enc = new TextEncoder();
function b64url(data: Uint8Array | string): string {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** A JWT exactly as GLM's SDKs make it: header {alg, sign_type}, times in milliseconds. */
async function glmJwt(id: string, secret: string, expMs: number, signWith = secret): Promise<string> {
  const head = b64url(JSON.stringify({ alg: "HS256", sign_type: "SIGN" }));
  const body = b64url(JSON.stringify({ api_key: id, exp: expMs, timestamp: Date.now() }));
  const key = await crypto.subtle.importKey("raw", enc.encode(signWith), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  const sig = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(`${head}.${body}`)));
  return `${head}.${body}.${b64url(sig)}`;
}

function withAuth(authorization: string | undefined): Promise<Response> {
  return gw("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", ...(authorization !== undefined ? { authorization } : {}) },
    body: JSON.stringify(chatBody("hi [[sim: tokens=3]]")),
  });
}

let k: CreatedKey;
let secret: string;

beforeAll(async () => {
  k = await createKey();
  secret = k.key.split(".")[1]!;
});

describe("client key forms", () => {
  it("accepts Authorization: Bearer <id>.<secret>", async () => {
    const res = await withAuth(`Bearer ${k.key}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(3);
  });

  it("accepts Bearer <GLM JWT> and a bare <GLM JWT>", async () => {
    const jwt = await glmJwt(k.id, secret, Date.now() + 60_000);
    expect((await withAuth(`Bearer ${jwt}`)).status).toBe(200);
    expect((await withAuth(jwt)).status).toBe(200);
  });

  it("accepts a JWT whose exp is in seconds", async () => {
    const jwt = await glmJwt(k.id, secret, Math.floor(Date.now() / 1000) + 60);
    expect((await withAuth(jwt)).status).toBe(200);
  });

  it.each([
    ["no header", undefined, "1001"],
    ["empty bearer", "Bearer ", "1001"],
    ["garbage", "Bearer not-a-key", "1002"],
    ["unknown id", "Bearer 0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAA", "1000"],
  ])("refuses %s with 401 and GLM code", async (_name, header, code) => {
    const res = await withAuth(header);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it("refuses a wrong secret", async () => {
    const res = await withAuth(`Bearer ${k.id}.wrongwrongwrongwrongwrong`);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "1000" } });
  });

  it("refuses an expired JWT (1003) and a badly signed one (1004)", async () => {
    const expired = await glmJwt(k.id, secret, Date.now() - 1_000);
    const res1 = await withAuth(expired);
    expect(res1.status).toBe(401);
    expect(await res1.json()).toMatchObject({ error: { code: "1003" } });
    const forged = await glmJwt(k.id, secret, Date.now() + 60_000, "some-other-secret");
    const res2 = await withAuth(`Bearer ${forged}`);
    expect(res2.status).toBe(401);
    expect(await res2.json()).toMatchObject({ error: { code: "1004" } });
  });

  it("refuses a JWT whose exp is more than 24 h ahead (1002), in milliseconds or seconds", async () => {
    const day = 24 * 3_600_000;
    for (const exp of [Date.now() + day + 120_000, Math.floor((Date.now() + 30 * day) / 1000)]) {
      const res = await withAuth(await glmJwt(k.id, secret, exp));
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code: "1002", message: expect.stringContaining("24 hours") } });
    }
    // Just inside the horizon is fine.
    expect((await withAuth(await glmJwt(k.id, secret, Date.now() + day - 60_000))).status).toBe(200);
  });

  it("bounds zhipuai-sdk-nodejs-v4's microsecond tokens (exp millennia ahead as GLM reads it) by their timestamp", async () => {
    // The SDK's payload: timestamp = now in microseconds, exp = timestamp + 180 000.
    const sdkToken = async (issuedMs: number) => {
      const head = b64url(JSON.stringify({ alg: "HS256", sign_type: "SIGN" }));
      const ts = Math.round(issuedMs * 1e3);
      const body = b64url(JSON.stringify({ api_key: k.id, exp: ts + 180_000, timestamp: ts }));
      const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
        "sign",
      ]);
      return `${head}.${body}.${b64url(new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(`${head}.${body}`))))}`;
    };
    expect((await withAuth(await sdkToken(Date.now()))).status).toBe(200);
    const old = await withAuth(await sdkToken(Date.now() - 25 * 3_600_000));
    expect(old.status).toBe(401);
    expect(await old.json()).toMatchObject({ error: { code: "1003", message: expect.stringContaining("24 hours") } });
  });

  it("never returns the secret or its hash anywhere", async () => {
    const res = await admin("GET", `/keys/${k.id}`);
    const text = await res.text();
    expect(text).not.toContain(secret);
    expect(text).not.toMatch(/secret_hash|secret_sealed/);
    const list = await (await admin("GET", "/keys")).text();
    expect(list).not.toContain(secret);
  });
});

describe("revocation", () => {
  it("refuses a deleted key on the very next request, in every form", async () => {
    const victim = await createKey();
    const vsecret = victim.key.split(".")[1]!;
    expect((await withAuth(`Bearer ${victim.key}`)).status).toBe(200);
    const del = await admin("DELETE", `/keys/${victim.id}`);
    expect(del.status).toBe(200);
    expect(((await del.json()) as { revoked_at: string | null }).revoked_at).toBeTruthy();
    const res = await withAuth(`Bearer ${victim.key}`);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "1000", message: expect.stringContaining("revoked") } });
    expect((await withAuth(await glmJwt(victim.id, vsecret, Date.now() + 60_000))).status).toBe(401);
    const usage = await gw("/v1/usage", { headers: { authorization: `Bearer ${victim.key}` } });
    expect(usage.status).toBe(401);
  });
});

describe("admin vs client", () => {
  it("admin routes refuse a client key", async () => {
    const res = await gw("/admin/keys", { headers: { authorization: `Bearer ${k.key}` } });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "1000" } });
  });

  it("admin routes refuse a missing token", async () => {
    const res = await gw("/admin/keys");
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "1001" } });
  });

  it("the admin token is not a client key", async () => {
    const res = await withAuth(`Bearer ${ADMIN}`);
    expect(res.status).toBe(401);
  });

  it("the preflight allows the openai SDK's x-stainless-* headers, and nothing else unknown", async () => {
    const pre = await gw("/v1/chat/completions", {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example.com",
        "access-control-request-method": "POST",
        "access-control-request-headers":
          "authorization,content-type,x-stainless-os,X-Stainless-Retry-Count,x-stainless-timeout,x-evil",
      },
    });
    const allowed = (pre.headers.get("access-control-allow-headers") ?? "").split(",");
    expect(allowed).toEqual(
      expect.arrayContaining([
        "authorization",
        "content-type",
        "x-stainless-os",
        "x-stainless-retry-count",
        "x-stainless-timeout",
      ]),
    );
    expect(allowed).not.toContain("x-evil");
  });

  it("admin routes have no CORS; client routes do", async () => {
    const pre = await gw("/admin/keys", {
      method: "OPTIONS",
      headers: { origin: "https://x.example", "access-control-request-method": "GET" },
    });
    expect(pre.headers.get("access-control-allow-origin")).toBeNull();
    const client = await gw("/v1/chat/completions", {
      method: "OPTIONS",
      headers: { origin: "https://x.example", "access-control-request-method": "POST" },
    });
    expect(client.headers.get("access-control-allow-origin")).toBe("*");
    expect(client.headers.get("access-control-allow-headers")).toMatch(/authorization/);
  });

  it("creates, lists, patches and validates keys", async () => {
    const created = await createKey({ name: "patch-me", tier: "V2", max_concurrency: 7 });
    expect(created.key).toMatch(/^[0-9a-f]{32}\.[A-Za-z0-9_-]{32}$/);
    expect(created.webhook_secret).toMatch(/^whsec_/);
    const patched = await admin("PATCH", `/keys/${created.id}`, { tier: "V1", max_concurrency: null, name: "renamed" });
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ tier: "V1", max_concurrency: null, name: "renamed" });
    const got = (await (await admin("GET", `/keys/${created.id}`)).json()) as {
      tier: string;
      in_flight: Record<string, number>;
    };
    expect(got.tier).toBe("V1");
    expect(got.in_flight).toEqual({});
    const list = (await (await admin("GET", "/keys")).json()) as { data: { id: string }[] };
    expect(list.data.map((d) => d.id)).toContain(created.id);
    const bad = await admin("POST", "/keys", { name: "x", tier: "V9" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: "1214", message: expect.stringContaining("tier") } });
    const missing = await admin("POST", "/keys", { tier: "V0" });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: { code: "1213", message: expect.stringContaining("name") } });
    expect((await admin("GET", "/keys/not-an-id")).status).toBe(404);
    expect((await admin("GET", "/keys/0123456789abcdef0123456789abcdef")).status).toBe(404);
  });
});

describe("chat with the key", () => {
  it("works at both base URLs", async () => {
    const a = await chat(k.key, chatBody("x [[sim: tokens=2]]"));
    expect(a.status).toBe(200);
    const b = await gw("/api/paas/v4/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
      body: JSON.stringify(chatBody("x [[sim: tokens=2]]")),
    });
    expect(b.status).toBe(200);
  });
});
