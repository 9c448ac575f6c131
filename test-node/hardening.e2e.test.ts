// End to end under `wrangler dev` (the real rate-limiting bindings, local Durable Objects and queue): failed
// authentication limited per client IP before any object call, browser tokens refused where the key's full
// authority is needed, and async submissions bounded by the key's budget, its cap on active jobs and
// request_id idempotency.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, startE2E, type E2E } from "../test-support/harness.ts";

let e2e: E2E;

beforeAll(async () => {
  e2e = await startE2E({ vars: { ASYNC_MAX_ACTIVE_JOBS: "2" } });
});

afterAll(async () => {
  await e2e?.close();
});

const FLASH = "glm-4-flash-250414";
const chatBody = (content: string, extra: Record<string, unknown> = {}) => ({
  model: FLASH,
  messages: [{ role: "user", content }],
  ...extra,
});

function call(path: string, auth: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${e2e.url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: auth, ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function errorOf(res: Response) {
  return { status: res.status, ...((await res.json()) as { error: { code: string; message: string } }).error };
}

async function settled(key: string, id: string): Promise<Record<string, unknown>> {
  const end = Date.now() + 30_000;
  for (;;) {
    const v = (await (await call(`/v1/async-result/${id}`, `Bearer ${key}`)).json()) as Record<string, unknown>;
    if (v["task_status"] !== "PROCESSING" || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("failed authentication is rate limited", () => {
  it("per client IP: past 20 failures, 429 with Retry-After for every request from it, before any object call", async () => {
    const ip = "198.51.100.77";
    const good = await e2e.createKey();
    // The binding counts in windows aligned to the clock: 20 failures may straddle two of them, so keep
    // failing until the limit answers — after at least 20 failures, and within 40.
    const statuses: number[] = [];
    let over: Response | undefined;
    for (let i = 0; i <= 40 && !over; i++) {
      const res = await call(
        "/v1/usage",
        i % 2 ? "Bearer not-a-key" : `Bearer ${"0".repeat(31)}${i % 10}.${"x".repeat(24)}`,
        undefined,
        { "cf-connecting-ip": ip },
      );
      if (res.status === 429) over = res;
      else {
        statuses.push(res.status);
        await res.body?.cancel();
      }
    }
    expect(statuses.length).toBeGreaterThanOrEqual(20);
    expect(new Set(statuses)).toEqual(new Set([401]));
    expect(over?.status).toBe(429);
    if (!over) return;
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await errorOf(over)).toMatchObject({
      code: "429",
      message: expect.stringContaining("too many failed authentication"),
    });
    // A key this gateway has not yet seen succeed is refused from that IP too: nothing reaches its object.
    const before = e2e.sim.sim.stats().total;
    expect(
      (
        await call("/v1/chat/completions", `Bearer ${good.key}`, chatBody("x [[sim: tokens=1]]"), {
          "cf-connecting-ip": ip,
        })
      ).status,
    ).toBe(429);
    expect(e2e.sim.sim.stats().total).toBe(before);
    // Other clients are not affected.
    const elsewhere = await call("/v1/chat/completions", `Bearer ${good.key}`, chatBody("x [[sim: tokens=1]]"), {
      "cf-connecting-ip": "198.51.100.78",
    });
    expect(elsewhere.status).toBe(200);
    await elsewhere.text();
  });
});

describe("browser tokens", () => {
  it("are refused (403) on async jobs and /v1/usage, and work on chat", async () => {
    const k = await e2e.createKey();
    const { token } = (await (await call("/v1/tokens", `Bearer ${k.key}`, { ttl_seconds: 60 })).json()) as {
      token: string;
    };
    const job = (await (
      await call("/v1/async/chat/completions", `Bearer ${k.key}`, chatBody("mine [[sim: tokens=1]]"))
    ).json()) as { id: string };
    const refused = [
      await call("/v1/usage", `Bearer ${token}`),
      await call("/v1/async/chat/completions", `Bearer ${token}`, chatBody("x [[sim: tokens=1]]")),
      await call("/api/paas/v4/async/summarize", `Bearer ${token}`, { text: "Some text." }),
      await call(`/v1/async-result/${job.id}`, `Bearer ${token}`),
      await call("/v1/tokens", `Bearer ${token}`, {}),
    ];
    for (const res of refused)
      expect(await errorOf(res), res.url).toMatchObject({
        status: 403,
        code: "1000",
        message: expect.stringContaining("a browser token cannot"),
      });
    const ok = await call("/v1/chat/completions", `Bearer ${token}`, chatBody("hi [[sim: tokens=2]]"));
    expect(ok.status).toBe(200);
    await ok.text();
  });
});

describe("async submissions are bounded", () => {
  it("by the key's daily budget: 1308 at submission once it is used up", async () => {
    // The job spends; then the key's limit is set below what it spent (a job's worst case is reserved at
    // admission, so a limit this small would refuse the job itself).
    const k = await e2e.createKey();
    const first = (await (
      await call("/v1/async/chat/completions", `Bearer ${k.key}`, chatBody("spend [[sim: tokens=30]]"))
    ).json()) as { id: string };
    expect(await settled(k.key, first.id)).toMatchObject({ task_status: "SUCCESS" });
    const patched = await fetch(`${e2e.url}/admin/keys/${k.id}`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ daily_token_limit: 20 }),
    });
    expect(patched.status).toBe(200);
    const res = await call("/v1/async/chat/completions", `Bearer ${k.key}`, chatBody("more [[sim: tokens=1]]"));
    expect(await errorOf(res)).toMatchObject({ status: 429, code: "1308" });
  });

  it("by the cap on jobs queued or running, and a repeated request_id returns the same job", async () => {
    const k = await e2e.createKey();
    const slow = (n: number) => chatBody(`slow ${n} [[sim: tokens=20 delay=100]]`, { request_id: `e2e-${n}-${k.id}` });
    const a = (await (await call("/v1/async/chat/completions", `Bearer ${k.key}`, slow(1))).json()) as { id: string };
    const again = await call("/v1/async/chat/completions", `Bearer ${k.key}`, slow(1));
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(((await again.json()) as { id: string }).id).toBe(a.id);
    const b = (await (await call("/v1/async/chat/completions", `Bearer ${k.key}`, slow(2))).json()) as { id: string };
    const third = await call("/v1/async/chat/completions", `Bearer ${k.key}`, slow(3));
    expect(await errorOf(third)).toMatchObject({ status: 429, code: "1302" });
    expect(await settled(k.key, a.id)).toMatchObject({ task_status: "SUCCESS", attempts: 1 });
    expect(await settled(k.key, b.id)).toMatchObject({ task_status: "SUCCESS" });
    // The replayed submission ran once upstream.
    const logged = (await (await fetch(`${e2e.sim.url}/_sim/requests?limit=1000`)).json()) as {
      request_id: string | null;
    }[];
    expect(logged.filter((r) => r.request_id === `e2e-1-${k.id}`)).toHaveLength(1);
  });
});
