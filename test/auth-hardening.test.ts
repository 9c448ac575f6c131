// Authentication hardening: failed authentication is limited per client IP and per key id before it
// reaches any object; a large body is read only after its credential was accepted; an unknown key and a
// wrong secret get the same answer; the admin token needs the Bearer scheme.
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { INVALID_KEY_MESSAGE, INVALID_TOKEN_MESSAGE } from "../src/auth/refusal.ts";
import { AUTH_FIRST_BODY_BYTES } from "../src/http/middleware.ts";
import { ADMIN, chatBody, createKey, gw, simStats } from "./helpers.ts";

const json = (auth: string, ip: string, body: string) => ({
  method: "POST",
  headers: { authorization: auth, "content-type": "application/json", "cf-connecting-ip": ip },
  body,
});

async function errorOf(res: Response) {
  return {
    status: res.status,
    retryAfter: res.headers.get("retry-after"),
    ...((await res.json()) as { error: { code: string; message: string } }).error,
  };
}

/**
 * Sends failures until one is answered 429. The binding counts in windows aligned to the clock, so `limit`
 * failures may straddle two windows: the limit must answer after at least `limit` failures and within
 * twice as many. Returns the 429's error.
 */
async function failUntilLimited(limit: number, fail: (i: number) => Promise<Response>) {
  const statuses: number[] = [];
  for (let i = 0; i <= 2 * limit; i++) {
    const res = await fail(i);
    if (res.status === 429) {
      expect(statuses.length).toBeGreaterThanOrEqual(limit);
      expect(new Set(statuses)).toEqual(new Set([401]));
      return errorOf(res);
    }
    statuses.push(res.status);
    await res.body?.cancel();
  }
  throw new Error(`no 429 after ${statuses.length} failures`);
}

/** A fresh address per test: the per-IP counter is shared by the whole run. */
const freshIp = () => `203.0.113.${Math.floor(Math.random() * 250)}:${crypto.randomUUID().slice(0, 6)}`;

describe("failed authentication is rate limited", () => {
  it("per client IP: past 20 failures the IP gets 429 with Retry-After, even with a valid key it never used", async () => {
    const ip = freshIp();
    const k = await createKey();
    const body = JSON.stringify(chatBody("x [[sim: tokens=1]]"));
    // The failure past the limit is answered 429, and so is every later request from the IP.
    const over = await failUntilLimited(20, (i) =>
      gw(
        "/v1/chat/completions",
        json(
          i % 2 ? "Bearer not-a-key" : `Bearer ${crypto.randomUUID().replaceAll("-", "")}.${"w".repeat(24)}`,
          ip,
          body,
        ),
      ),
    );
    expect(over).toMatchObject({
      status: 429,
      code: "429",
      message: expect.stringContaining("too many failed authentication"),
    });
    expect(Number(over.retryAfter)).toBeGreaterThan(0);
    const before = (await simStats()).total;
    const blocked = await errorOf(await gw("/v1/chat/completions", json(`Bearer ${k.key}`, ip, body)));
    expect(blocked).toMatchObject({ status: 429, code: "429" });
    expect((await simStats()).total).toBe(before);
    // Another IP is not affected.
    expect((await gw("/v1/chat/completions", json(`Bearer ${k.key}`, freshIp(), body))).status).toBe(200);
  });

  it("per key id, from any number of IPs; a credential that already worked keeps working", async () => {
    const victim = await createKey();
    const bystander = await createKey();
    const body = JSON.stringify(chatBody("x [[sim: tokens=1]]"));
    // The owner used the key before the attack.
    expect((await gw("/v1/chat/completions", json(`Bearer ${victim.key}`, freshIp(), body))).status).toBe(200);
    const over = await failUntilLimited(30, (i) =>
      gw("/v1/chat/completions", json(`Bearer ${victim.id}.${"guess".repeat(5)}${i}`, freshIp(), body)),
    );
    expect(over).toMatchObject({ status: 429, code: "429" });
    // Guesses at the key id are refused before its object from now on, from a new IP too…
    const guess = await errorOf(
      await gw("/v1/usage", {
        headers: { authorization: `Bearer ${victim.id}.${"x".repeat(24)}`, "cf-connecting-ip": freshIp() },
      }),
    );
    expect(guess).toMatchObject({ status: 429, code: "429" });
    // …while the owner's own key, seen to work, still does; and other keys are untouched.
    expect((await gw("/v1/chat/completions", json(`Bearer ${victim.key}`, freshIp(), body))).status).toBe(200);
    expect(
      (await gw("/v1/usage", { headers: { authorization: `Bearer ${bystander.key}`, "cf-connecting-ip": freshIp() } }))
        .status,
    ).toBe(200);
  });

  it("counts failures only: many successful requests from one IP are never limited", async () => {
    const ip = freshIp();
    const k = await createKey();
    for (let i = 0; i < 25; i++) {
      expect(
        (await gw("/v1/usage", { headers: { authorization: `Bearer ${k.key}`, "cf-connecting-ip": ip } })).status,
      ).toBe(200);
    }
  });
});

describe("one answer for every refused credential", () => {
  it("an unknown key id, a wrong secret and a revoked key get the same 401", async () => {
    const k = await createKey();
    const revoked = await createKey();
    await gw(`/admin/keys/${revoked.id}`, { method: "DELETE", headers: { authorization: `Bearer ${ADMIN}` } });
    const body = JSON.stringify(chatBody("x"));
    const answers = await Promise.all(
      [`${"0".repeat(32)}.${"a".repeat(24)}`, `${k.id}.${"b".repeat(24)}`, revoked.key].map(async (key) =>
        errorOf(await gw("/v1/chat/completions", json(`Bearer ${key}`, freshIp(), body))),
      ),
    );
    for (const a of answers)
      expect(a).toEqual({ status: 401, retryAfter: null, code: "1000", message: INVALID_KEY_MESSAGE });
    // The same on the routes that authenticate themselves.
    const usage = await errorOf(
      await gw("/v1/usage", { headers: { authorization: `Bearer ${"0".repeat(32)}.${"a".repeat(24)}` } }),
    );
    expect(usage).toMatchObject({ status: 401, code: "1000", message: INVALID_KEY_MESSAGE });
  });

  it("a signed token naming an unknown key reads like a badly signed one", async () => {
    const k = await createKey();
    const minted = (await (
      await gw("/v1/tokens", { method: "POST", headers: { authorization: `Bearer ${k.key}` } })
    ).json()) as { token: string };
    const [h, p, s] = minted.token.split(".") as [string, string, string];
    const badSig = `${h}.${p}.${s.slice(0, -2)}${s.endsWith("AA") ? "BB" : "AA"}`;
    const payload = JSON.parse(atob(p.replaceAll("-", "+").replaceAll("_", "/"))) as Record<string, unknown>;
    const otherId = btoa(JSON.stringify({ ...payload, glm_edge_token: "f".repeat(32) }))
      .replaceAll("+", "-")
      .replaceAll("/", "_")
      .replace(/=+$/, "");
    const unknown = `${h}.${otherId}.${s}`;
    for (const t of [badSig, unknown]) {
      expect(
        await errorOf(await gw("/v1/chat/completions", json(`Bearer ${t}`, freshIp(), JSON.stringify(chatBody("x"))))),
      ).toEqual({
        status: 401,
        retryAfter: null,
        code: "1004",
        message: INVALID_TOKEN_MESSAGE,
      });
    }
  });
});

describe("authenticate before expensive work", () => {
  const big = (extra: string) => JSON.stringify(chatBody("y".repeat(AUTH_FIRST_BODY_BYTES) + extra));

  it("a large body with a bad credential is refused without being parsed", async () => {
    // Malformed JSON past 64 KiB: a parse would answer 400 (1210); the credential is checked first.
    const malformed = big("") + "}{";
    for (const auth of [`Bearer ${"0".repeat(32)}.${"a".repeat(24)}`, "Bearer not-a-key"]) {
      for (const path of [
        "/v1/chat/completions",
        "/v1/async/chat/completions",
        "/v1/summarize",
        "/v1/async/summarize",
        "/v1/tokens",
      ]) {
        const res = await gw(path, json(auth, freshIp(), malformed));
        expect(res.status, path).toBe(401);
      }
    }
    // A small malformed body from a real key id is parsed first (admission authenticates later at no extra
    // cost); a made-up id is refused before anything (its tag does not verify).
    const k = await createKey();
    expect((await gw("/v1/chat/completions", json(`Bearer ${k.id}.${"a".repeat(24)}`, freshIp(), "{"))).status).toBe(
      400,
    );
    expect(
      (await gw("/v1/chat/completions", json(`Bearer ${"0".repeat(32)}.${"a".repeat(24)}`, freshIp(), "{"))).status,
    ).toBe(401);
  });

  it("a large body with a good credential goes through, and a chunked body of unknown size is authenticated first", async () => {
    const k = await createKey();
    const res = await gw("/v1/chat/completions", json(`Bearer ${k.key}`, freshIp(), big(" [[sim: tokens=2]]")));
    expect(res.status).toBe(200);
    const chunked = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode("{not json"));
        c.close();
      },
    });
    const refused = await gw("/v1/chat/completions", {
      method: "POST",
      body: chunked,
      duplex: "half",
      headers: {
        authorization: `Bearer ${k.id}.${"z".repeat(24)}`,
        "content-type": "application/json",
        "cf-connecting-ip": freshIp(),
      },
    } as RequestInit);
    expect(refused.status).toBe(401);
  });
});

describe("the admin token", () => {
  async function adminWith(authorization: string) {
    const ctx = createExecutionContext();
    const res = await createApp().fetch(new Request("http://gw/admin/keys", { headers: { authorization } }), env, ctx);
    await waitOnExecutionContext(ctx);
    return res.status;
  }

  it("needs the Bearer scheme: the bare token, Basic or Token is refused", async () => {
    expect(await adminWith(`Bearer ${ADMIN}`)).toBe(200);
    expect(await adminWith(`bearer ${ADMIN}`)).toBe(200);
    for (const h of [
      ADMIN,
      `Basic ${ADMIN}`,
      `Token ${ADMIN}`,
      `Bearer ${ADMIN} extra`,
      `Bearer ${ADMIN}x`,
      `Bearer ${ADMIN.slice(0, -1)}`,
    ]) {
      expect(await adminWith(h), h).toBe(401);
    }
  });
});
