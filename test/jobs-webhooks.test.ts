// Webhooks for finished jobs: signed by the Standard Webhooks scheme and verified here with the
// `standardwebhooks` library, retried with backoff (same webhook-id) until a 2xx, never redirected,
// bounded by a timeout and a 24 h window, and stopped when the key is revoked. Also the pure pieces:
// the signature and the retry schedules.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { WEBHOOK_WINDOW_MS } from "../src/jobs/config.ts";
import { attemptDelivery } from "../src/jobs/delivery.ts";
import type { JobObject } from "../src/jobs/job-object.ts";
import {
  nextWebhookAttempt,
  slotWaitDelayS,
  upstreamRetryDelayS,
  webhookDelayMs,
  WEBHOOK_MAX_DELAY_MS,
} from "../src/jobs/schedule.ts";
import { jobStub } from "../src/jobs/store.ts";
import type { JobRecord } from "../src/jobs/types.ts";
import { signature, signedHeaders } from "../src/jobs/webhook-signing.ts";
import { admin, chatBody, createKey, waitFor } from "./helpers.ts";
import { hookUrl, hooks, inspect, settled, submitOk, uniqueName, view, type JobView } from "./jobs-helpers.ts";

function withoutWebhook(v: JobView): Record<string, unknown> {
  const { webhook: _w, ...rest } = v;
  return rest;
}

describe("webhook delivery", () => {
  it("POSTs the result, signed so that standardwebhooks verifies it", async () => {
    const k = await createKey();
    const name = uniqueName("ok");
    const task = await submitOk(
      k.key,
      chatBody("signed [[sim: tokens=4]]", { callback_url: hookUrl(name), metadata: { order: 7 } }),
    );
    const done = await settled(k.key, task.id, { webhook: true });
    expect(done.webhook).toMatchObject({
      state: "delivered",
      webhook_id: task.id,
      next_attempt_at: null,
      gave_up: null,
    });
    expect(done.webhook!.deliveries).toEqual([
      { attempt: 1, at: expect.any(String), status: 204, error: null, duration_ms: expect.any(Number) },
    ]);

    const got = await hooks(name);
    expect(got.length).toBe(1);
    const hook = got[0]!;
    expect(hook.headers["content-type"]).toBe("application/json");
    expect(hook.headers["webhook-id"]).toBe(task.id);
    expect(Math.abs(Number(hook.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(300);
    expect(hook.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    const payload = new Webhook(k.webhook_secret).verify(hook.body, hook.headers);
    // The webhook body is the polled result, minus the delivery log.
    expect(payload).toEqual(withoutWebhook(done));
    expect(payload).toMatchObject({ task_status: "SUCCESS", metadata: { order: 7 }, usage: { completion_tokens: 4 } });
    // Another key's secret does not verify it.
    const other = await createKey();
    expect(() => new Webhook(other.webhook_secret).verify(hook.body, hook.headers)).toThrow();
  });

  it("retries a failing receiver with backoff and the same webhook-id until it answers 2xx", async () => {
    const k = await createKey();
    const name = uniqueName("retry");
    const task = await submitOk(
      k.key,
      chatBody("retry [[sim: tokens=2]]", { callback_url: hookUrl(name, "fail=2&status=503") }),
    );
    const done = await settled(k.key, task.id, { webhook: true });
    expect(done.webhook!.state).toBe("delivered");
    expect(done.webhook!.deliveries.map((d) => [d.attempt, d.status])).toEqual([
      [1, 503],
      [2, 503],
      [3, 204],
    ]);
    expect(done.webhook!.deliveries[0]!.error).toBe("receiver answered 503");

    const got = await hooks(name);
    expect(got.map((h) => h.status)).toEqual([503, 503, 204]);
    expect(new Set(got.map((h) => h.headers["webhook-id"]))).toEqual(new Set([task.id]));
    expect(new Set(got.map((h) => h.body)).size).toBe(1);
    const wh = new Webhook(k.webhook_secret);
    for (const h of got) expect(wh.verify(h.body, h.headers)).toMatchObject({ id: task.id, task_status: "SUCCESS" });
    // Exponential backoff with a 1 s base and half-fixed jitter: at least 0.5 s, then at least 1 s apart.
    expect(got[1]!.at - got[0]!.at).toBeGreaterThanOrEqual(500);
    expect(got[2]!.at - got[1]!.at).toBeGreaterThanOrEqual(1000);
  });

  it("announces a failed job too, with its GLM-style error", async () => {
    const k = await createKey();
    const name = uniqueName("fail");
    const task = await submitOk(k.key, chatBody("refused [[sim: error=1261]]", { callback_url: hookUrl(name) }));
    await settled(k.key, task.id, { webhook: true });
    const [hook] = await hooks(name);
    expect(new Webhook(k.webhook_secret).verify(hook!.body, hook!.headers)).toMatchObject({
      id: task.id,
      task_status: "FAIL",
      error: { code: "1261" },
    });
  });

  it("does not follow redirects: a 3xx is a failed attempt", async () => {
    const k = await createKey();
    const name = uniqueName("redirect");
    const task = await submitOk(
      k.key,
      chatBody("redirect [[sim: tokens=2]]", { callback_url: hookUrl(name, "redirect=1") }),
    );
    const v = await waitFor(
      () => view(k.key, task.id),
      (x) => (x.webhook?.deliveries.length ?? 0) >= 1,
      15_000,
    );
    expect(v.webhook!.deliveries[0]).toMatchObject({ status: 302, error: expect.stringContaining("not followed") });
    expect(v.webhook!.state).toBe("pending");
    expect(v.webhook!.next_attempt_at).toEqual(expect.any(String));
    expect(await hooks(`${name}-redirected`)).toEqual([]);
  });

  it("signs with the key's current secret: a rotated secret applies to the next delivery", async () => {
    const k = await createKey();
    const rotated = await admin("POST", `/keys/${k.id}/webhook-secret`);
    expect(rotated.status).toBe(200);
    const { webhook_secret: fresh } = (await rotated.json()) as { webhook_secret: string };
    expect(fresh).toMatch(/^whsec_/);
    expect(fresh).not.toBe(k.webhook_secret);
    const name = uniqueName("rotated");
    const task = await submitOk(k.key, chatBody("rotated [[sim: tokens=2]]", { callback_url: hookUrl(name) }));
    await settled(k.key, task.id, { webhook: true });
    const [hook] = await hooks(name);
    expect(new Webhook(fresh).verify(hook!.body, hook!.headers)).toMatchObject({ id: task.id });
    expect(() => new Webhook(k.webhook_secret).verify(hook!.body, hook!.headers)).toThrow();
  });

  it("stops delivering once the key is revoked", async () => {
    const k = await createKey();
    const name = uniqueName("revoked");
    const task = await submitOk(
      k.key,
      chatBody("revoked [[sim: tokens=2]]", { callback_url: hookUrl(name, "fail=1000") }),
    );
    await waitFor(
      () => view(k.key, task.id),
      (x) => (x.webhook?.deliveries.length ?? 0) >= 1,
      15_000,
    );
    expect((await admin("DELETE", `/keys/${k.id}`)).status).toBe(200);
    const record = await waitFor(
      () => inspect(task.id),
      (r) => r?.delivery?.state === "failed",
      15_000,
    );
    expect(record?.delivery?.gave_up).toContain("revoked");
    const sent = (await hooks(name)).length;
    expect(record?.delivery?.attempts.length).toBe(sent + 1);
  });

  it("gives up after the 24-hour window", async () => {
    const k = await createKey();
    const name = uniqueName("window");
    const task = await submitOk(
      k.key,
      chatBody("window [[sim: tokens=2]]", { callback_url: hookUrl(name, "fail=1000") }),
    );
    await waitFor(
      () => view(k.key, task.id),
      (x) => (x.webhook?.deliveries.length ?? 0) >= 1,
      15_000,
    );
    // Pretend the first attempt was a day ago and the next one is due now.
    await runInDurableObject(jobStub(env, task.id), async (_obj: JobObject, state) => {
      const r = state.storage.kv.get<JobRecord>("record")!;
      r.delivery!.first_attempt_at = Date.now() - WEBHOOK_WINDOW_MS - 1_000;
      r.delivery!.next_attempt_at = Date.now();
      state.storage.kv.put("record", r);
      await state.storage.setAlarm(Date.now());
    });
    const v = await waitFor(
      () => view(k.key, task.id),
      (x) => x.webhook?.state === "failed",
      15_000,
    );
    expect(v.webhook!.gave_up).toContain("within 24 hours");
    expect(v.webhook!.next_attempt_at).toBeNull();
  });
});

describe("one delivery attempt", () => {
  it("times out a receiver that does not answer", async () => {
    const k = await createKey();
    const name = uniqueName("hang");
    const out = await attemptDelivery(
      env,
      { url: hookUrl(name, "hang=1"), webhookId: "job_x", keyId: k.id, jobId: "job_x", payload: "{}", attempt: 1 },
      { timeoutMs: 300 },
    );
    expect(out).toMatchObject({ result: "retry", attempt: { status: null, error: "no answer within 300 ms" } });
    expect((await hooks(name)).length).toBe(1);
  });

  it("records a receiver that cannot be reached without echoing the runtime's network error", async () => {
    const k = await createKey();
    // Nothing listens on port 1: the connection is refused.
    const out = await attemptDelivery(env, {
      url: "http://127.0.0.1:1/hook",
      webhookId: "job_x",
      keyId: k.id,
      jobId: "job_x",
      payload: "{}",
      attempt: 1,
    });
    expect(out).toMatchObject({
      result: "retry",
      attempt: { status: null, error: "could not connect to the receiver" },
    });
  });

  it("gives up when the URL is no longer allowed by the policy", async () => {
    const k = await createKey();
    const name = uniqueName("policy");
    const out = await attemptDelivery(
      { ...env, WEBHOOK_ALLOW_PRIVATE: "false" },
      { url: hookUrl(name), webhookId: "job_x", keyId: k.id, jobId: "job_x", payload: "{}", attempt: 1 },
    );
    expect(out).toMatchObject({ result: "give_up", reason: expect.stringContaining("no longer allowed") });
    expect(await hooks(name)).toEqual([]);
  });
});

describe("signature", () => {
  const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  it("matches the standardwebhooks reference implementation", async () => {
    const ts = 1_700_000_000;
    const body = JSON.stringify({ hello: "世界", n: 1 });
    expect(await signature(secret, "msg_1", ts, body)).toBe(
      new Webhook(secret).sign("msg_1", new Date(ts * 1000), body),
    );
  });

  it("produces headers the library verifies, and a changed body does not", async () => {
    const body = '{"task_status":"SUCCESS"}';
    const headers = await signedHeaders(secret, "job_abc", body);
    const wh = new Webhook(secret);
    expect(wh.verify(body, { ...headers })).toEqual({ task_status: "SUCCESS" });
    expect(() => wh.verify('{"task_status":"FAIL"}', { ...headers })).toThrow();
  });
});

describe("retry schedules", () => {
  const lo = () => 0;
  const hi = () => 1;

  it("doubles the webhook delay from the base, with jitter in [d/2, d], capped at 4 h", () => {
    expect(webhookDelayMs(1, 30, lo)).toBe(15_000);
    expect(webhookDelayMs(1, 30, hi)).toBe(30_000);
    expect(webhookDelayMs(2, 30, hi)).toBe(60_000);
    expect(webhookDelayMs(5, 30, lo)).toBe(240_000);
    expect(webhookDelayMs(40, 30, hi)).toBe(WEBHOOK_MAX_DELAY_MS);
    for (let n = 1; n < 20; n++)
      expect(webhookDelayMs(n + 1, 30, lo)).toBeGreaterThanOrEqual(webhookDelayMs(n, 30, lo));
  });

  it("keeps webhook attempts inside the 24 h window, the last one landing on its end", () => {
    for (const rand of [lo, hi]) {
      const first = 0;
      let now = first;
      let attempts = 1;
      for (;;) {
        const next = nextWebhookAttempt(now, first, attempts, 30, rand);
        if (next === null) break;
        expect(next).toBeGreaterThan(now);
        expect(next).toBeLessThanOrEqual(first + WEBHOOK_WINDOW_MS);
        now = next;
        attempts++;
      }
      expect(now).toBe(first + WEBHOOK_WINDOW_MS);
      // Default base 30 s: a dozen or two attempts over the day, not hundreds.
      expect(attempts).toBeGreaterThanOrEqual(10);
      expect(attempts).toBeLessThanOrEqual(25);
    }
  });

  it("backs off upstream retries and slot waits in whole seconds", () => {
    expect([1, 2, 3].map((n) => upstreamRetryDelayS(n, 5, hi))).toEqual([5, 15, 45]);
    expect(upstreamRetryDelayS(1, 5, lo)).toBe(3);
    expect(upstreamRetryDelayS(20, 5, hi)).toBe(300);
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => slotWaitDelayS(n, hi))).toEqual([1, 2, 4, 8, 16, 30, 30]);
    expect(slotWaitDelayS(1, lo)).toBe(1);
  });
});
