// The queue consumer and the job's state machine, driven message by message with createMessageBatch:
// a duplicate delivery never runs a job twice, a crashed run is fenced out and taken over, each outcome
// acks / retries / re-sends explicitly, the dead-letter consumer ends jobs with a cause, and the job's
// alarm fails jobs that never finished and deletes results after 7 days.
import {
  createExecutionContext,
  createMessageBatch,
  getQueueResult,
  runDurableObjectAlarm,
  runInDurableObject,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { JOB_MAX_ATTEMPTS, JOB_RETENTION_MS } from "../src/jobs/config.ts";
import { handleQueue, withDeadline } from "../src/jobs/consumer.ts";
import type { JobObject } from "../src/jobs/job-object.ts";
import { jobStub, newJobId } from "../src/jobs/store.ts";
import { classify } from "../src/jobs/run.ts";
import type { JobRecord } from "../src/jobs/types.ts";
import { chat, chatBody, createKey, simRequests, waitFor, type CreatedKey } from "./helpers.ts";
import { hookUrl, hooks, inspect, result, settled, uniqueName, view } from "./jobs-helpers.ts";

const QUEUE = "glm-edge-jobs";
const DLQ = "glm-edge-jobs-dlq";

let k: CreatedKey;
beforeAll(async () => {
  k = await createKey({ tier: "V3" });
});

/** A job stored without a queue message, so only this test's deliveries run it. */
async function seed(
  key: CreatedKey,
  content: string,
  callbackUrl: string | null = null,
): Promise<{ id: string; requestId: string }> {
  const id = newJobId();
  const requestId = `req-${crypto.randomUUID()}`;
  const ok = await jobStub(env, id).create({
    record: {
      id,
      key_id: key.id,
      kind: "chat",
      model: "glm-4-flash-250414",
      request_id: requestId,
      callback_url: callbackUrl,
      metadata: null,
      created_at: Date.now(),
    },
    body: JSON.stringify({ ...chatBody(content), request_id: requestId }),
  });
  expect(ok).toBe(true);
  return { id, requestId };
}

/** Runs the consumer on one batch; reports acks and retries (with the delay each retry asked for). */
async function deliver(queue: string, messages: { id: string; job: unknown; attempts?: number }[]) {
  const batch = createMessageBatch(
    queue,
    messages.map((m) => ({ id: m.id, timestamp: new Date(), attempts: m.attempts ?? 1, body: m.job })),
  );
  // getQueueResult does not report retry delays: record them on the way.
  const delays = new Map<string, number | undefined>();
  for (const m of batch.messages) {
    const retry = m.retry.bind(m);
    vi.spyOn(m, "retry").mockImplementation((opts) => {
      delays.set(m.id, opts?.delaySeconds);
      retry(opts);
    });
  }
  const ctx = createExecutionContext();
  await handleQueue(batch, env, ctx);
  const res = await getQueueResult(batch, ctx);
  return {
    ...res,
    retryMessages: res.retryMessages.map((r) => ({ msgId: r.msgId, delaySeconds: delays.get(r.msgId) })),
  };
}

const msg = (id: string, job: string, attempts = 1) => ({ id, job: { job }, attempts });

async function upstreamCalls(requestId: string): Promise<number> {
  return (await simRequests(1000)).filter((r) => r["request_id"] === requestId).length;
}

function patch(id: string, fn: (r: JobRecord) => void): Promise<void> {
  return runInDurableObject(jobStub(env, id), (_obj: JobObject, state) => {
    const r = state.storage.kv.get<JobRecord>("record")!;
    fn(r);
    state.storage.kv.put("record", r);
  });
}

describe("at most one run to completion", () => {
  it("runs a job once when its message is delivered twice at the same time", async () => {
    const job = await seed(k, "twice [[sim: tokens=5 delay=60]]");
    const [a, b] = await Promise.all([deliver(QUEUE, [msg("m-1", job.id)]), deliver(QUEUE, [msg("m-1", job.id)])]);
    const acked = [a, b].filter((r) => r.explicitAcks.includes("m-1"));
    const retried = [a, b].filter((r) => r.retryMessages.some((m) => m.msgId === "m-1"));
    expect(acked.length).toBe(1);
    expect(retried.length).toBe(1);
    // The duplicate comes back once the running delivery's lease could have lapsed.
    expect(retried[0]!.retryMessages[0]!.delaySeconds).toBeGreaterThan(1);
    expect((await view(k.key, job.id)).task_status).toBe("SUCCESS");
    // A late redelivery of a finished job is acked without calling upstream.
    const late = await deliver(QUEUE, [msg("m-1", job.id, 2)]);
    expect(late.explicitAcks).toEqual(["m-1"]);
    expect(await upstreamCalls(job.requestId)).toBe(1);
  });

  it("runs a job once when two copies arrive in the same batch", async () => {
    const job = await seed(k, "same batch [[sim: tokens=3 delay=40]]");
    const res = await deliver(QUEUE, [msg("a", job.id), msg("b", job.id)]);
    expect(res.explicitAcks.length + res.retryMessages.length).toBe(2);
    expect(res.explicitAcks.length).toBe(1);
    expect(await upstreamCalls(job.requestId)).toBe(1);
  });

  it("takes over from a crashed run once its lease lapses, and ignores the crashed run's late result", async () => {
    const job = await seed(k, "crash [[sim: tokens=3]]");
    const stub = jobStub(env, job.id);
    const crashed = await stub.begin("crashed-run");
    expect(crashed.do).toBe("run");

    const busy = await deliver(QUEUE, [msg("m-2", job.id)]);
    expect(busy.retryMessages).toEqual([{ msgId: "m-2", delaySeconds: expect.any(Number) }]);
    expect(await upstreamCalls(job.requestId)).toBe(0);

    await patch(job.id, (r) => (r.run!.lease_until = Date.now() - 1));
    const taken = await deliver(QUEUE, [msg("m-2", job.id, 2)]);
    expect(taken.explicitAcks).toEqual(["m-2"]);
    const done = await view(k.key, job.id);
    // The lost run counts as an attempt; the second run's answer is the result.
    expect(done).toMatchObject({ task_status: "SUCCESS", attempts: 2 });

    expect(await stub.renew("crashed-run")).toBe(false);
    expect(await stub.settle("crashed-run", { kind: "success", result: { choices: ["stale"] } })).toEqual({
      do: "ack",
    });
    expect((await view(k.key, job.id))["choices"]).toEqual(done["choices"]);
    expect(await upstreamCalls(job.requestId)).toBe(1);
  });

  it("gives up on a job whose runs keep stopping without a result", async () => {
    const job = await seed(k, "crashes [[sim: tokens=2]]");
    const stub = jobStub(env, job.id);
    for (let i = 0; i < JOB_MAX_ATTEMPTS; i++) {
      expect((await stub.begin(`run-${i}`)).do).toBe("run");
      await patch(job.id, (r) => (r.run!.lease_until = Date.now() - 1));
    }
    expect(await stub.begin("last")).toEqual({ do: "dead-letter" });
    expect(await view(k.key, job.id)).toMatchObject({
      task_status: "FAIL",
      attempts: JOB_MAX_ATTEMPTS,
      error: { message: expect.stringContaining("stopped without a result") },
    });
  });
});

describe("storage", () => {
  it("keeps a large request in parts without splitting a character, and drops it once the job ends", async () => {
    const id = newJobId();
    // A surrogate pair straddles the 500 000-character part boundary.
    const body = "x".repeat(499_999) + "😀" + "中".repeat(700_000);
    const stub = jobStub(env, id);
    await stub.create({
      record: {
        id,
        key_id: k.id,
        kind: "chat",
        model: "glm-4-flash-250414",
        request_id: "r",
        callback_url: null,
        metadata: null,
        created_at: Date.now(),
      },
      body,
    });
    const start = await stub.begin("big");
    expect(start.do).toBe("run");
    if (start.do === "run") expect(start.run.body === body).toBe(true);
    await stub.settle("big", { kind: "fail", error: { code: "1214", message: "test" } });
    const rows = await runInDurableObject(
      stub,
      (_o: JobObject, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM body").one().n,
    );
    expect(rows).toBe(0);
    expect(await view(k.key, id)).toMatchObject({ task_status: "FAIL", error: { code: "1214" } });
  });
});

describe("message handling", () => {
  it("retries the same message with backoff after a transient upstream failure", async () => {
    const job = await seed(k, "transient [[sim: error=500]]");
    const res = await deliver(QUEUE, [msg("t-1", job.id)]);
    expect(res.explicitAcks).toEqual([]);
    expect(res.retryMessages).toEqual([{ msgId: "t-1", delaySeconds: 1 }]);
    expect(await inspect(job.id)).toMatchObject({
      state: "queued",
      attempts: 1,
      run: null,
      last_error: { code: "500" },
      next_try_at: expect.any(Number),
    });
  });

  it("acks a failed-for-good job and forwards it to the dead-letter queue after the last attempt", async () => {
    const job = await seed(k, "last attempt [[sim: error=1305]]");
    await patch(job.id, (r) => (r.attempts = JOB_MAX_ATTEMPTS - 1));
    const res = await deliver(QUEUE, [msg("d-1", job.id)]);
    expect(res.explicitAcks).toEqual(["d-1"]);
    expect(await view(k.key, job.id)).toMatchObject({ task_status: "FAIL", error: { code: "1305" } });
    // The dead-letter copy reaches the dead-letter consumer through the real local queue.
    const record = await waitFor(
      () => inspect(job.id),
      (r) => r?.dead_lettered_at !== null,
      10_000,
    );
    expect(record?.dead_lettered_at).toEqual(expect.any(Number));
  });

  it("waits for a slot by sending a fresh delayed message, so waiting never uses up delivery attempts", async () => {
    const key = await createKey({ tier: "V3", max_concurrency: 1 });
    const ac = new AbortController();
    const stream = await chat(key.key, chatBody("hold [[sim: tokens=500 delay=20]]", { stream: true }), {}, ac.signal);
    const reader = stream.body!.getReader();
    await reader.read();
    const job = await seed(key, "wait [[sim: tokens=2]]");
    const res = await deliver(QUEUE, [msg("w-1", job.id, 9)]);
    expect(res.explicitAcks).toEqual(["w-1"]);
    expect(res.retryMessages).toEqual([]);
    expect(await inspect(job.id)).toMatchObject({
      state: "queued",
      attempts: 0,
      slot_waits: 1,
      last_error: { code: "1302" },
    });
    ac.abort();
    await reader.cancel().catch(() => undefined);
    // The fresh message, on the real queue, runs the job once the slot is free.
    expect(await settled(key.key, job.id, { timeoutMs: 20_000 })).toMatchObject({
      task_status: "SUCCESS",
      attempts: 1,
    });
  }, 40_000);

  it("acks and drops a malformed message, and a message whose job no longer exists", async () => {
    const res = await deliver(QUEUE, [{ id: "junk", job: { nope: 1 } }, msg("gone", newJobId())]);
    expect(res.explicitAcks.sort()).toEqual(["gone", "junk"]);
  });
});

describe("classify", () => {
  it.each([
    [429, "1302", "wait"],
    [429, "1305", "transient"],
    [429, "1303", "transient"],
    [500, "500", "transient"],
    [500, "1230", "transient"],
    [502, "1234", "transient"],
    [504, "1234", "transient"],
    [503, "503", "transient"],
    [408, "1234", "transient"],
    [429, "1308", "fail"],
    [429, "1304", "fail"],
    [429, "1113", "fail"],
    [400, "1261", "fail"],
    [400, "1211", "fail"],
    [401, "1000", "fail"],
    [413, "1261", "fail"],
  ])("HTTP %i with code %s is %s", (status, code, kind) => {
    expect(classify(status, { code, message: "m" }).kind).toBe(kind);
  });
});

describe("run time cap", () => {
  it("stops a run that never ends and reports a transient failure", async () => {
    const abort = new AbortController();
    const out = await withDeadline(new Promise(() => undefined), 50, abort);
    expect(out).toMatchObject({
      kind: "transient",
      error: { code: "1234", message: expect.stringContaining("did not finish") },
    });
    expect(abort.signal.aborted).toBe(true);
  });

  it("passes a run's own outcome through when it ends in time", async () => {
    const abort = new AbortController();
    expect(await withDeadline(Promise.resolve({ kind: "success", result: { ok: 1 } }), 1_000, abort)).toEqual({
      kind: "success",
      result: { ok: 1 },
    });
    expect(abort.signal.aborted).toBe(false);
  });
});

describe("dead-letter consumer", () => {
  it("fails a job whose message gave up, with the cause, and still sends its webhook", async () => {
    const name = uniqueName("dlq");
    const job = await seed(k, "never run [[sim: tokens=2]]", hookUrl(name));
    const res = await deliver(DLQ, [msg("x-1", job.id, 11)]);
    expect(res.explicitAcks).toEqual(["x-1"]);
    const v = await settled(k.key, job.id, { webhook: true });
    expect(v).toMatchObject({
      task_status: "FAIL",
      error: { message: expect.stringContaining("queue message failed 11 times") },
    });
    expect(v.webhook!.state).toBe("delivered");
    expect((await hooks(name)).length).toBe(1);
    expect((await inspect(job.id))?.dead_lettered_at).toEqual(expect.any(Number));
  });

  it("leaves a job alone while another delivery is running it", async () => {
    const job = await seed(k, "running [[sim: tokens=2]]");
    await jobStub(env, job.id).begin("live-run");
    await deliver(DLQ, [msg("x-2", job.id, 11)]);
    expect(await inspect(job.id)).toMatchObject({ state: "running", dead_lettered_at: null });
  });
});

describe("the job's alarm", () => {
  it("fails a job that did not finish within 24 hours", async () => {
    const job = await seed(k, "stuck [[sim: tokens=2]]");
    await patch(job.id, (r) => (r.created_at = Date.now() - 25 * 3_600_000));
    expect(await runDurableObjectAlarm(jobStub(env, job.id))).toBe(true);
    expect(await view(k.key, job.id)).toMatchObject({
      task_status: "FAIL",
      error: { message: expect.stringContaining("did not finish within 24 hours") },
    });
  });

  it("deletes a finished job 7 days after it finished", async () => {
    const job = await seed(k, "old [[sim: tokens=2]]");
    expect((await deliver(QUEUE, [msg("o-1", job.id)])).explicitAcks).toEqual(["o-1"]);
    expect((await view(k.key, job.id)).task_status).toBe("SUCCESS");
    await patch(job.id, (r) => (r.finished_at = Date.now() - JOB_RETENTION_MS - 1));
    expect(await runDurableObjectAlarm(jobStub(env, job.id))).toBe(true);
    expect((await result(k.key, job.id)).status).toBe(404);
    expect(await inspect(job.id)).toBeNull();
    // A stray redelivery afterwards is acked and runs nothing.
    expect((await deliver(QUEUE, [msg("o-1", job.id, 3)])).explicitAcks).toEqual(["o-1"]);
    expect(await upstreamCalls(job.requestId)).toBe(1);
  });
});
