// Async chat jobs through the API, run by the real local queue and consumer against the simulator:
// submit → PROCESSING at once → poll → SUCCESS or FAIL with a cause; validation; isolation between keys;
// slot waits that do not fail; transient upstream failures retried and then dead-lettered.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { jobIndexStub } from "../src/jobs/job-index.ts";
import { JOB_MAX_ATTEMPTS } from "../src/jobs/config.ts";
import { admin, chat, chatBody, createKey, gw, simRequests, waitFor, type CreatedKey } from "./helpers.ts";
import { inspect, result, settled, submit, submitOk, view } from "./jobs-helpers.ts";

let k: CreatedKey;
beforeAll(async () => {
  k = await createKey({ tier: "V3" });
});

async function simCalls(requestId: string): Promise<Record<string, unknown>[]> {
  return (await simRequests(1000)).filter((r) => r["request_id"] === requestId);
}

describe("async chat streams from GLM internally", () => {
  it("completes an answer that takes longer than the upstream timeout, in one attempt", async () => {
    // UPSTREAM_TIMEOUT_MS is 3 s in the tests; this answer takes about 4 s, a token every 100 ms.
    const task = await submitOk(k.key, chatBody("a long answer [[sim: tokens=40 delay=100]]"));
    const done = await settled(k.key, task.id, { timeoutMs: 30_000 });
    expect(done).toMatchObject({ task_status: "SUCCESS", attempts: 1, usage: { completion_tokens: 40 } });
    const calls = await simCalls(task.request_id);
    expect(calls.map((c) => c["stream"])).toEqual([true]);
    const choices = done["choices"] as { finish_reason: string; message: { role: string; content: string } }[];
    expect(choices).toHaveLength(1);
    expect(choices[0]).toMatchObject({ finish_reason: "stop", message: { role: "assistant" } });
    expect(choices[0]!.message.content.length).toBeGreaterThan(40);
  });

  it("builds the non-streaming result from the stream: tool calls, finish_reason, usage and web_search", async () => {
    const tools = [
      {
        type: "function",
        function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
      },
      { type: "web_search", web_search: { enable: true } },
    ];
    const body = chatBody("weather in Hangzhou? [[sim:tool]]", { tools });
    const task = await submitOk(k.key, body);
    const done = await settled(k.key, task.id);
    const sync = (await (await chat(k.key, body)).json()) as { choices: unknown; usage: unknown; web_search: unknown };
    expect(done).toMatchObject({ task_status: "SUCCESS", choices: [{ finish_reason: "tool_calls" }] });
    // The simulator derives tool call ids from the request id, which differs between the two calls.
    const sameIds = (v: unknown) => JSON.parse(JSON.stringify(v).replace(/call_\d+/g, "call_x")) as unknown;
    expect(sameIds(done["choices"])).toEqual(sameIds(sync.choices));
    expect(done["usage"]).toEqual(sync.usage);
    expect(done["web_search"]).toEqual(sync.web_search);
  });

  it("does not retry a stream that went silent after GLM started answering: one attempt, one charge", async () => {
    const key = await createKey();
    const task = await submitOk(key.key, chatBody("stalls [[sim: tokens=10 hang_after=3]]"));
    const done = await settled(key.key, task.id, { timeoutMs: 30_000 });
    expect(done).toMatchObject({
      task_status: "FAIL",
      attempts: 1,
      error: { code: "1234", message: expect.stringContaining("not retried") },
    });
    expect((await simCalls(task.request_id)).length).toBe(1);
    const usage = await waitFor(
      async () =>
        (
          (await (await gw("/v1/usage", { headers: { authorization: `Bearer ${key.key}` } })).json()) as {
            totals: { requests: number };
          }
        ).totals,
      (t) => t.requests === 1,
    );
    expect(usage.requests).toBe(1);
  });
});

describe("bounded submission", () => {
  it("the same request_id from the same key returns the existing job and runs once", async () => {
    const key = await createKey();
    const body = chatBody("only once [[sim: tokens=3]]", { request_id: `idem-${crypto.randomUUID()}` });
    const first = await submit(key.key, body);
    const firstTask = (await first.json()) as { id: string; request_id: string };
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    const again = await submit(key.key, body);
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await again.json()).toEqual(firstTask);
    await settled(key.key, firstTask.id);
    // Still the same job once it has finished, and the upstream ran it once.
    expect(((await (await submit(key.key, body)).json()) as { id: string }).id).toBe(firstTask.id);
    expect((await simCalls(firstTask.request_id)).length).toBe(1);
    // The same id with a different request is refused; another key's same request_id is its own job.
    const changed = await submit(key.key, { ...body, temperature: 0.1 });
    expect(changed.status).toBe(400);
    expect(await changed.json()).toMatchObject({
      error: { code: "1214", message: expect.stringContaining("request_id") },
    });
    const other = await createKey();
    expect(((await (await submit(other.key, body)).json()) as { id: string }).id).not.toBe(firstTask.id);
  });

  it("a key may have at most ASYNC_MAX_ACTIVE_JOBS jobs queued or running (429 1302 beyond)", async () => {
    const key = await createKey();
    const submitCapped = async (content: string) => {
      const ctx = createExecutionContext();
      const res = await createApp().fetch(
        new Request("http://gw/v1/async/chat/completions", {
          method: "POST",
          headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json" },
          body: JSON.stringify(chatBody(content)),
        }),
        { ...env, ASYNC_MAX_ACTIVE_JOBS: "2" },
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return res;
    };
    const a = (await (await submitCapped("slow a [[sim: tokens=20 delay=100]]")).json()) as { id: string };
    const b = (await (await submitCapped("slow b [[sim: tokens=20 delay=100]]")).json()) as { id: string };
    const over = await submitCapped("one too many [[sim: tokens=1]]");
    expect(over.status).toBe(429);
    expect(await over.json()).toMatchObject({
      error: { code: "1302", message: expect.stringContaining("2 async jobs queued or running") },
    });
    expect(over.headers.get("retry-after")).toBe("5");
    await settled(key.key, a.id, { timeoutMs: 20_000 });
    await settled(key.key, b.id, { timeoutMs: 20_000 });
    // Finished jobs no longer count.
    await waitFor(
      () => jobIndexStub(env, key.id).activeCount(),
      (n) => n === 0,
    );
    expect((await submitCapped("room again [[sim: tokens=1]]")).status).toBe(200);
  });
});

describe("submit and poll", () => {
  it("answers PROCESSING at once, then SUCCESS with GLM's choices and usage", async () => {
    const body = chatBody("async hello [[sim: tokens=6]]", { metadata: { ticket: "T-1" } });
    const res = await submit(k.key, body);
    expect(res.status).toBe(200);
    const task = (await res.json()) as { id: string; request_id: string; model: string; task_status: string };
    expect(task).toEqual({
      id: expect.stringMatching(/^job_[0-9a-f]{32}$/),
      request_id: expect.any(String),
      model: "glm-4-flash-250414",
      task_status: "PROCESSING",
    });
    expect(res.headers.get("x-request-id")).toBe(task.request_id);

    const done = await settled(k.key, task.id);
    expect(done).toMatchObject({
      id: task.id,
      request_id: task.request_id,
      model: "glm-4-flash-250414",
      task_status: "SUCCESS",
      kind: "chat",
      attempts: 1,
      metadata: { ticket: "T-1" },
      usage: { completion_tokens: 6 },
    });
    expect(done.finished_at).toEqual(expect.any(String));
    expect(done.webhook).toBeUndefined();
    // The same answer a synchronous call gets (the simulator is deterministic in the messages).
    const sync = (await (await chat(k.key, chatBody("async hello [[sim: tokens=6]]"))).json()) as {
      choices: unknown;
      usage: unknown;
    };
    expect(done["choices"]).toEqual(sync.choices);
    expect(done["usage"]).toEqual(sync.usage);
    // Upstream saw exactly one call, under the job's request id.
    expect((await simCalls(task.request_id)).length).toBe(1);
  });

  it("works at GLM's own base path and keeps the client's request_id", async () => {
    const task = await submitOk(
      k.key,
      chatBody("glm path [[sim: tokens=3]]", { request_id: "my-req-42" }),
      "/api/paas/v4/async/chat/completions",
    );
    expect(task.request_id).toBe("my-req-42");
    const res = await result(k.key, task.id, "/api/paas/v4");
    expect(res.status).toBe(200);
    const done = await settled(k.key, task.id);
    expect(done).toMatchObject({ task_status: "SUCCESS", request_id: "my-req-42" });
  });

  it("records the job's usage on the key like any request", async () => {
    const key = await createKey();
    const task = await submitOk(key.key, chatBody("usage [[sim: tokens=4]]"));
    await settled(key.key, task.id);
    const report = await waitFor(
      async () =>
        (await (await gw("/v1/usage", { headers: { authorization: `Bearer ${key.key}` } })).json()) as {
          totals: { requests: number; completion_tokens: number };
        },
      (r) => r.totals.requests === 1,
    );
    expect(report.totals).toMatchObject({ requests: 1, completion_tokens: 4 });
  });
});

describe("validation", () => {
  it.each([
    ["stream: true", chatBody("x", { stream: true }), 400, "1214", "stream"],
    ["no messages", { model: "glm-4-flash-250414" }, 400, "1213", "messages"],
    ["unknown model", chatBody("x", { model: "glm-9" }), 400, "1211", "glm-9"],
    ["max_tokens over the model's limit", chatBody("x", { max_tokens: 999_999 }), 400, "1214", "max_tokens"],
    ["callback_url not a string", chatBody("x", { callback_url: 42 }), 400, "1214", "callback_url"],
    [
      "callback_url with userinfo",
      chatBody("x", { callback_url: "https://a:b@example.com/" }),
      400,
      "1214",
      "userinfo",
    ],
    [
      "callback_url to cloud metadata",
      chatBody("x", { callback_url: "http://169.254.169.254/" }),
      400,
      "1214",
      "link-local",
    ],
    ["metadata not an object", chatBody("x", { metadata: [1, 2] }), 400, "1214", "metadata"],
    ["metadata too large", chatBody("x", { metadata: { blob: "x".repeat(20_000) } }), 400, "1214", "metadata"],
  ])("refuses %s", async (_name, body, status, code, fragment) => {
    const res = await submit(k.key, body);
    expect(res.status).toBe(status);
    const err = (await res.json()) as { error: { code: string; message: string } };
    expect(err.error.code).toBe(code);
    expect(err.error.message).toContain(fragment);
  });

  it("refuses a body that is not JSON (415) and a missing or wrong key (401)", async () => {
    const notJson = await gw("/v1/async/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "text/plain" },
      body: "hi",
    });
    expect(notJson.status).toBe(415);
    const noKey = await gw("/v1/async/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(chatBody("x")),
    });
    expect(noKey.status).toBe(401);
    expect(await noKey.json()).toMatchObject({ error: { code: "1001" } });
    const wrong = await submit(`${k.id}.${"x".repeat(32)}`, chatBody("x"));
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ error: { code: "1000" } });
  });
});

describe("isolation between keys", () => {
  it("shows a job only to its own key; others get the same 404 as for an unknown id", async () => {
    const other = await createKey();
    const task = await submitOk(k.key, chatBody("mine [[sim: tokens=2]]"));
    const foreign = await result(other.key, task.id);
    expect(foreign.status).toBe(404);
    const foreignBody = await foreign.json();
    const unknown = await result(other.key, "job_" + "0".repeat(32));
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual(foreignBody);
    const malformed = await result(other.key, "job_not-a-real-id");
    expect(malformed.status).toBe(404);
    expect((await result(k.key, task.id)).status).toBe(200);
    await settled(k.key, task.id);
    expect((await result(other.key, task.id)).status).toBe(404);
  });

  it("refuses to poll with a revoked key", async () => {
    const key = await createKey();
    const task = await submitOk(key.key, chatBody("revoked [[sim: tokens=2]]"));
    await settled(key.key, task.id);
    expect((await admin("DELETE", `/keys/${key.id}`)).status).toBe(200);
    const res = await result(key.key, task.id);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "1000", message: expect.stringContaining("revoked") } });
  });
});

describe("failures", () => {
  it("fails at once, with GLM's error, when upstream refuses the request", async () => {
    const task = await submitOk(k.key, chatBody("bad [[sim: error=1214]]"));
    const done = await settled(k.key, task.id);
    expect(done).toMatchObject({ task_status: "FAIL", attempts: 1, error: { code: "1214" } });
    expect(done["choices"]).toBeUndefined();
    expect((await simCalls(task.request_id)).length).toBe(1);
  });

  it("refuses a submission with 1308 when the key's daily budget is used up: no job, no upstream call", async () => {
    const key = await createKey();
    // A job spends; then the key's limit is set below what it spent.
    await settled(key.key, (await submitOk(key.key, chatBody("spend [[sim: tokens=30]]"))).id);
    await admin("PATCH", `/keys/${key.id}`, { daily_token_limit: 20 });
    const before = (await simRequests(1000)).length;
    for (const path of ["/v1/async/chat/completions", "/v1/async/summarize"]) {
      const res = await submit(
        key.key,
        path.endsWith("summarize") ? { text: "Some text." } : chatBody("budget [[sim: tokens=2]]"),
        path,
      );
      expect(res.status, path).toBe(429);
      expect(await res.json()).toMatchObject({
        error: { code: "1308", message: expect.stringContaining("token limit") },
      });
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    }
    expect((await simRequests(1000)).length).toBe(before);
  });

  it("retries transient upstream failures with backoff, then fails with the cause and dead-letters the message", async () => {
    const task = await submitOk(k.key, chatBody("overloaded [[sim: error=1305]]"));
    const first = await waitFor(
      () => view(k.key, task.id),
      (v) => v.last_error !== undefined,
      10_000,
    );
    expect(first).toMatchObject({ task_status: "PROCESSING", last_error: { code: "1305" } });
    const done = await settled(k.key, task.id, { timeoutMs: 40_000 });
    expect(done).toMatchObject({
      task_status: "FAIL",
      attempts: JOB_MAX_ATTEMPTS,
      error: { code: "1305", message: expect.stringContaining(`gave up after ${JOB_MAX_ATTEMPTS} attempts`) },
    });
    // Each run is one pipeline call, which makes UPSTREAM_MAX_ATTEMPTS (3) attempts before the job retries later.
    expect((await simCalls(task.request_id)).length).toBe(JOB_MAX_ATTEMPTS * 3);
    const record = await waitFor(
      () => inspect(task.id),
      (r) => r?.dead_lettered_at !== null,
      10_000,
    );
    expect(record?.dead_lettered_at).toEqual(expect.any(Number));
  }, 60_000);
});

describe("slots", () => {
  it("waits for a free slot instead of failing, then runs", async () => {
    const key = await createKey({ tier: "V3", max_concurrency: 1 });
    const ac = new AbortController();
    const stream = await chat(
      key.key,
      chatBody("hold the slot [[sim: tokens=500 delay=20]]", { stream: true }),
      {},
      ac.signal,
    );
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    await reader.read();

    const task = await submitOk(key.key, chatBody("queued behind [[sim: tokens=3]]"));
    const waiting = await waitFor(
      () => view(key.key, task.id),
      (v) => v.last_error?.code === "1302",
      15_000,
    );
    expect(waiting).toMatchObject({ task_status: "PROCESSING", last_error: { code: "1302" } });
    expect((await simCalls(task.request_id)).length).toBe(0);

    ac.abort();
    await reader.cancel().catch(() => undefined);
    const done = await settled(key.key, task.id, { timeoutMs: 25_000 });
    // Waiting is not failing: the one run that reached upstream is the only attempt counted.
    expect(done).toMatchObject({ task_status: "SUCCESS", attempts: 1 });
    expect((await inspect(task.id))?.slot_waits).toBeGreaterThanOrEqual(1);
    expect((await simCalls(task.request_id)).length).toBe(1);
  }, 45_000);
});

describe("summarize jobs", () => {
  const text = "The gateway keeps the upstream key, enforces the in-flight limits and records usage.\n".repeat(20);

  it("summarizes asynchronously: PROCESSING at once, then SUCCESS with the summary, usage, cost and chunks", async () => {
    const task = await submitOk(k.key, { text, style: "tldr", metadata: { doc: 1 } }, "/v1/async/summarize");
    expect(task).toMatchObject({
      id: expect.stringMatching(/^job_/),
      model: expect.any(String),
      task_status: "PROCESSING",
    });
    const done = await settled(k.key, task.id);
    expect(done).toMatchObject({
      task_status: "SUCCESS",
      kind: "summarize",
      model: task.model,
      summary: expect.stringContaining("⟦digest"),
      usage: {
        prompt_tokens: expect.any(Number),
        completion_tokens: expect.any(Number),
        total_tokens: expect.any(Number),
      },
      cost_cny: expect.any(Number),
      chunks: 1,
      metadata: { doc: 1 },
    });
    expect(done["choices"]).toBeUndefined();
  });

  it("fixes the model at submission and works at GLM's base path", async () => {
    const task = await submitOk(k.key, { text, model: "glm-4-air-250414" }, "/api/paas/v4/async/summarize");
    expect(task.model).toBe("glm-4-air-250414");
    expect(await settled(k.key, task.id)).toMatchObject({ task_status: "SUCCESS", model: "glm-4-air-250414" });
  });

  it.each([
    ["empty text", { text: "   " }, "1214", "text"],
    ["no text", { style: "tldr" }, "1213", "text"],
    ["stream: true", { text, stream: true }, "1214", "stream"],
    ["an unknown field", { text, colour: "blue" }, "1214", "colour"],
    ["an unknown model", { text, model: "glm-9" }, "1211", "glm-9"],
    ["a refused callback_url", { text, callback_url: "https://[::ffff:127.0.0.1]/" }, "1214", "IPv4-mapped"],
  ])("refuses %s", async (_name, body, code, fragment) => {
    const res = await submit(k.key, body, "/v1/async/summarize");
    expect(res.status).toBe(400);
    const err = (await res.json()) as { error: { code: string; message: string } };
    expect(err.error.code).toBe(code);
    expect(err.error.message).toContain(fragment);
  });
});
