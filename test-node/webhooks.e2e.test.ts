// End to end: async jobs and signed webhooks against the gateway under `wrangler dev` (local queue,
// Durable Objects and alarms), the GLM simulator upstream, and a webhook receiver in this process that
// verifies every delivery with the `standardwebhooks` library — the way an integration would.
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHookReceiver, type HookReceiver } from "../test/jobs-receiver.ts";
import { startE2E, type E2E } from "../test-support/harness.ts";

let e2e: E2E;
let receiver: HookReceiver;
let key: { id: string; key: string; webhook_secret: string };

type Json = Record<string, unknown>;
type JobView = Json & {
  task_status: string;
  attempts: number;
  last_error?: { code: string };
  webhook?: { state: string; webhook_id: string; deliveries: { attempt: number; status: number | null }[] };
};

beforeAll(async () => {
  [e2e, receiver] = await Promise.all([
    startE2E({ vars: { WEBHOOK_ALLOW_PRIVATE: "true", WEBHOOK_RETRY_BASE_SECONDS: "1", JOB_RETRY_BASE_SECONDS: "1" } }),
    startHookReceiver(),
  ]);
  key = await e2e.createKey({ tier: "V3" });
});

afterAll(async () => {
  await Promise.all([e2e?.close(), receiver?.close()]);
});

async function post(path: string, apiKey: string, body: unknown): Promise<Response> {
  return fetch(`${e2e.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function submit(
  apiKey: string,
  body: unknown,
  path = "/v1/async/chat/completions",
): Promise<{ id: string; request_id: string; model: string; task_status: string }> {
  const res = await post(path, apiKey, body);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as never;
}

async function poll(apiKey: string, id: string): Promise<JobView> {
  const res = await fetch(`${e2e.url}/api/paas/v4/async-result/${id}`, {
    headers: { authorization: `Bearer ${apiKey}` },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as JobView;
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 45_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let v = await fn();
  while (!ok(v)) {
    if (Date.now() > end) {
      throw new Error(
        `timed out waiting; last value: ${JSON.stringify(v).slice(0, 500)}\ngateway output:\n${e2e.gateway.output().slice(-3000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
    v = await fn();
  }
  return v;
}

const finished = (v: JobView) =>
  v.task_status !== "PROCESSING" && v.webhook?.state !== "pending" && v.webhook?.state !== "not_started";

function chatBody(content: string, extra: Json = {}): Json {
  return { model: "glm-4-flash-250414", messages: [{ role: "user", content }], ...extra };
}

/** Receiver names are unique per run, so nothing but this run's deliveries can land on them. */
const run = crypto.randomUUID().slice(0, 8);
const hook = (name: string, query = "") => `${receiver.url}/hooks/${name}-${run}${query ? `?${query}` : ""}`;
const received = (name: string) => receiver.received(`${name}-${run}`);

describe("async jobs end to end", () => {
  it("submit, process, poll, and a webhook the receiver verifies with standardwebhooks", async () => {
    const task = await submit(
      key.key,
      chatBody("e2e job [[sim: tokens=8]]", { callback_url: hook("basic"), metadata: { order: "A-1" } }),
    );
    expect(task.task_status).toBe("PROCESSING");
    const done = await until(() => poll(key.key, task.id), finished);
    expect(done).toMatchObject({ task_status: "SUCCESS", usage: { completion_tokens: 8 }, metadata: { order: "A-1" } });
    expect(done.webhook).toMatchObject({ state: "delivered", webhook_id: task.id });

    const got = received("basic");
    expect(got.length).toBe(1);
    const payload = new Webhook(key.webhook_secret).verify(got[0]!.body, got[0]!.headers) as Json;
    const { webhook: _w, ...withoutWebhook } = done;
    expect(payload).toEqual(withoutWebhook);
    expect((payload["choices"] as unknown[]).length).toBe(1);
  });

  it("keeps delivering while the receiver fails, with the same webhook-id, until it answers 2xx", async () => {
    const task = await submit(
      key.key,
      chatBody("flaky receiver [[sim: tokens=3]]", { callback_url: hook("flaky", "fail=3&status=500") }),
    );
    const done = await until(() => poll(key.key, task.id), finished);
    expect(done.webhook!.state).toBe("delivered");
    expect(done.webhook!.deliveries.map((d) => d.status)).toEqual([500, 500, 500, 204]);
    const got = received("flaky");
    expect(got.map((h) => h.status)).toEqual([500, 500, 500, 204]);
    expect(new Set(got.map((h) => h.headers["webhook-id"]))).toEqual(new Set([task.id]));
    const wh = new Webhook(key.webhook_secret);
    for (const h of got) expect(wh.verify(h.body, h.headers)).toMatchObject({ id: task.id, task_status: "SUCCESS" });
  });

  it("waits for a free slot while a slow stream holds the key's only one, then succeeds", async () => {
    const narrow = await e2e.createKey({ tier: "V3", max_concurrency: 1 });
    const ac = new AbortController();
    const stream = await fetch(`${e2e.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${narrow.key}`, "content-type": "application/json" },
      // Finite (about 8 s): the slot frees when the stream ends even if the runtime misses the disconnect.
      body: JSON.stringify(chatBody("slow stream [[sim: tokens=400 delay=20]]", { stream: true })),
      signal: ac.signal,
    });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    await reader.read();

    const task = await submit(
      narrow.key,
      chatBody("behind the stream [[sim: tokens=2]]", { callback_url: hook("slot") }),
    );
    const waiting = await until(
      () => poll(narrow.key, task.id),
      (v) => v.last_error?.code === "1302",
    );
    expect(waiting.task_status).toBe("PROCESSING");
    expect(received("slot")).toEqual([]);

    ac.abort();
    await reader.cancel().catch(() => undefined);
    const done = await until(() => poll(narrow.key, task.id), finished);
    expect(done).toMatchObject({ task_status: "SUCCESS", attempts: 1 });
    const [h] = received("slot");
    expect(new Webhook(narrow.webhook_secret).verify(h!.body, h!.headers)).toMatchObject({ task_status: "SUCCESS" });
  });

  it("loses nothing when the upstream is briefly down: the job retries and succeeds", async () => {
    const config = (body: Json) =>
      fetch(`${e2e.sim.url}/_sim/config`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    await config({ chaos: { seed: 7, errorRate: 1 } });
    let restored = false;
    try {
      const task = await submit(key.key, chatBody("upstream down [[sim: tokens=3]]", { callback_url: hook("down") }));
      const failing = await until(
        () => poll(key.key, task.id),
        (v) => v.last_error !== undefined,
      );
      expect(["1305", "500"]).toContain(failing.last_error!.code);
      await config({ chaos: null });
      restored = true;
      const done = await until(() => poll(key.key, task.id), finished);
      expect(done.task_status).toBe("SUCCESS");
      // At least the failed run and the one that succeeded (a slow machine may fit another failure in).
      expect(done.attempts).toBeGreaterThanOrEqual(2);
      expect(received("down").length).toBe(1);
    } finally {
      if (!restored) await config({ chaos: null });
    }
  });

  it("runs a summarize job and signs its result", async () => {
    const text = "Async jobs let integrations with short timeouts submit work and be called back.\n".repeat(30);
    const task = await submit(
      key.key,
      { text, style: "bullets", callback_url: hook("summary") },
      "/api/paas/v4/async/summarize",
    );
    const done = await until(() => poll(key.key, task.id), finished);
    expect(done).toMatchObject({
      task_status: "SUCCESS",
      kind: "summarize",
      summary: expect.any(String),
      chunks: expect.any(Number),
    });
    const [h] = received("summary");
    expect(new Webhook(key.webhook_secret).verify(h!.body, h!.headers)).toMatchObject({
      id: task.id,
      summary: done["summary"],
    });
  });

  it("keeps jobs private to their key", async () => {
    const other = await e2e.createKey();
    const task = await submit(key.key, chatBody("private [[sim: tokens=2]]"));
    const res = await fetch(`${e2e.url}/v1/async-result/${task.id}`, {
      headers: { authorization: `Bearer ${other.key}` },
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: "404" } });
  });

  it("refuses callback URLs aimed at metadata or hidden behind userinfo, even in development mode", async () => {
    for (const url of [
      "http://169.254.169.254/latest/meta-data/",
      "http://[::ffff:a9fe:a9fe]/",
      "http://metadata.google.internal/",
      "https://example.com@127.0.0.1/",
    ]) {
      const res = await post("/v1/async/chat/completions", key.key, chatBody("x", { callback_url: url }));
      expect(res.status, url).toBe(400);
      expect(await res.json()).toMatchObject({
        error: { code: "1214", message: expect.stringContaining("callback_url") },
      });
    }
  });
});
