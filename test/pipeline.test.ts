// The request pipeline's edges (src/pipeline/): the relay tells a client that stopped reading from upstream
// silence and ends a stream whose slot was lost; the leases are kept alive until GLM's first byte; settling
// never throws and never strands a slot, whatever the estimate or the release does; request ids that cannot
// be header values are refused before any slot is taken; and every caller reads GLM's codes from one table.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ModelEntry } from "../src/catalog/schema.ts";
import { DEFAULT_CATALOG } from "../src/catalog/default.ts";
import type { WaitUntil } from "../src/shared/wait-until.ts";
import type { Slot } from "../src/keys/slot.ts";
import { classify as jobClassify } from "../src/jobs/run.ts";
import { clientStatus, codeRule, GLM_CODES } from "../src/pipeline/glm-codes.ts";
import { admit, send } from "../src/pipeline/index.ts";
import { relaySse, type RelayOutcome } from "../src/pipeline/relay.ts";
import { settle, usageRecord, type CallFacts } from "../src/pipeline/settle.ts";
import { classify as summaryClassify, Transient } from "../src/summarize/failures.ts";
import type { AbortWhy, UpstreamResponse } from "../src/upstream/client.ts";
import type { UsageRecord } from "../src/usage/ledger.ts";
import { admin, chat, chatBody, createKey, SIM, sseData, waitFor } from "./helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const chunk = (i: number) =>
  `data: {"id":"1","choices":[{"index":0,"delta":{"role":"assistant","content":"t${i}"}}]}\n\n`;

/** An upstream body the test feeds by hand, and the abort the relay calls. */
function fakeUpstream() {
  let ctrl!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (ctrl = c) }, { highWaterMark: 0 });
  let reason: AbortWhy | undefined;
  const up: UpstreamResponse = {
    // The stream itself, not wrapped in a Response: the runtime's own pump would report the abort as unhandled.
    response: { body } as Response,
    abort: (why) => {
      if (reason) return;
      reason = why;
      try {
        ctrl.error(new Error(`aborted: ${why}`));
      } catch {
        // the relay cancelled the body first
      }
    },
    abortReason: () => reason,
  };
  const push = (s: string) => {
    if (!reason) ctrl.enqueue(enc.encode(s));
  };
  return { up, push, end: () => ctrl.close(), aborted: () => reason };
}

function relay(
  up: UpstreamResponse,
  opts: { idleTimeoutMs?: number; stallMs?: number; renew?: () => Promise<boolean> } = {},
) {
  let done!: (o: RelayOutcome) => void;
  const outcome = new Promise<RelayOutcome>((r) => (done = r));
  const body = relaySse(up, {
    idleTimeoutMs: opts.idleTimeoutMs ?? 5_000,
    stallMs: opts.stallMs ?? 5_000,
    renewEveryMs: 40,
    tickMs: 20,
    renew: opts.renew ?? (async () => true),
    onEnd: done,
  });
  return { body, outcome };
}

describe("relay", () => {
  it("renews the leases while GLM is silent before its first byte", async () => {
    const f = fakeUpstream();
    let renewals = 0;
    const r = relay(f.up, { renew: async () => (renewals++, true) });
    const reader = r.body.getReader();
    const first = reader.read();
    await sleep(300);
    expect(renewals).toBeGreaterThanOrEqual(4);
    f.push(chunk(0));
    expect(dec.decode((await first).value)).toBe(chunk(0));
    f.end();
    await reader.read().catch(() => undefined);
    expect((await r.outcome).ended).toBe("upstream_break");
  });

  it("cuts off a client that stopped reading without closing, and cancels the upstream call", async () => {
    const f = fakeUpstream();
    const r = relay(f.up, { stallMs: 150, idleTimeoutMs: 100 });
    const reader = r.body.getReader();
    f.push(chunk(0));
    expect(dec.decode((await reader.read()).value)).toBe(chunk(0));
    // The client reads no more; the upstream keeps sending.
    for (let i = 1; i <= 20; i++) {
      f.push(chunk(i));
      await sleep(10);
    }
    const o = await r.outcome;
    expect(o.ended).toBe("client_stalled");
    expect(f.aborted()).toBe("gateway");
  });

  it("does not call a client's pause an upstream timeout: the idle timeout counts upstream silence only", async () => {
    const f = fakeUpstream();
    const r = relay(f.up, { stallMs: 2_000, idleTimeoutMs: 100 });
    const reader = r.body.getReader();
    f.push(chunk(0));
    f.push(chunk(1));
    f.push(chunk(2));
    await reader.read();
    await sleep(400); // the client pauses four idle timeouts long, with data waiting for it
    for (let i = 0; i < 2; i++) expect((await reader.read()).done).toBe(false);
    f.push(
      'data: {"id":"1","choices":[{"index":0,"finish_reason":"stop","delta":{"content":""}}],"usage":{"prompt_tokens":3,"completion_tokens":3}}\n\ndata: [DONE]\n\n',
    );
    f.end();
    while (!(await reader.read()).done);
    const o = await r.outcome;
    expect(o.ended).toBe("completed");
    expect(f.aborted()).toBeUndefined();
  });

  it("reports upstream silence while the client reads as a timeout, in-band", async () => {
    const f = fakeUpstream();
    const r = relay(f.up, { idleTimeoutMs: 100 });
    f.push(chunk(0));
    const text = await new Response(r.body).text();
    expect((await r.outcome).ended).toBe("timeout");
    expect(JSON.parse(sseData(text).at(-1)!)).toMatchObject({
      error: { code: "1234", message: expect.stringContaining("sent nothing for 100 ms") },
    });
  });

  it("ends a stream whose slot was lost (renewal says so), in-band, and cancels the upstream call", async () => {
    const f = fakeUpstream();
    const r = relay(f.up, { renew: async () => false });
    f.push(chunk(0));
    const text = await new Response(r.body).text();
    expect((await r.outcome).ended).toBe("slot_lost");
    expect(f.aborted()).toBe("gateway");
    expect(text.startsWith(chunk(0))).toBe(true);
    expect(JSON.parse(sseData(text).at(-1)!)).toMatchObject({
      error: { code: "1234", message: expect.stringContaining("lost its concurrency slot") },
    });
    expect(text).not.toContain("[DONE]");
  });

  it("passes the bytes through unchanged and counts only upstream events", async () => {
    const f = fakeUpstream();
    const r = relay(f.up);
    const sent = chunk(0) + chunk(1);
    f.push(sent.slice(0, 17));
    f.push(sent.slice(17));
    const reader = r.body.getReader();
    const got = [dec.decode((await reader.read()).value), dec.decode((await reader.read()).value)];
    expect(got.join("")).toBe(sent);
    f.up.abort("client");
    await expect(reader.read()).rejects.toThrow();
    const o = await r.outcome;
    expect(o.ended).toBe("client_abort");
    expect(o.events).toBe(2);
  });
});

const model: ModelEntry = DEFAULT_CATALOG.models.find((m) => m.id === "glm-4-flash-250414")!;
const facts = (over: Partial<CallFacts> = {}): CallFacts => ({
  id: "call-1",
  requestId: "req-1",
  startedAt: Date.now(),
  model,
  kind: "chat",
  stream: true,
  messages: [{ role: "user", content: "hello there" }],
  bodyBytes: 400,
  ...over,
});

describe("settlement never throws", () => {
  it("estimates from the body's size when the estimate itself fails", () => {
    const rec = usageRecord(facts(), { status: 200, ended: "upstream_break", events: 3 }, () => {
      throw new RangeError("Maximum call stack size exceeded");
    });
    expect(rec).toMatchObject({ prompt_tokens: 100, completion_tokens: 3, estimated: true, ended: "upstream_break" });
  });

  it("records GLM's usage when it came, and nothing for a refused call", () => {
    const used = usageRecord(facts(), {
      status: 200,
      ended: "completed",
      usage: { prompt_tokens: 7, completion_tokens: 2 },
      events: 3,
      done: true,
    });
    expect(used).toMatchObject({ prompt_tokens: 7, completion_tokens: 2, estimated: false });
    const refused = usageRecord(facts(), { status: 429, ended: "upstream_error" }, () => {
      throw new Error("not called");
    });
    expect(refused).toMatchObject({ prompt_tokens: 0, completion_tokens: 0, cost_nano: 0, estimated: false });
  });

  it("keeps garbage out of the ledger: negative, fractional or missing numbers become whole non-negative counts", () => {
    const rec = usageRecord(facts(), {
      status: 200,
      ended: "completed",
      usage: { prompt_tokens: -5, completion_tokens: 2.7, prompt_tokens_details: { cached_tokens: Number.NaN } },
    });
    expect(rec).toMatchObject({ prompt_tokens: 0, completion_tokens: 2, cached_tokens: 0 });
    expect(Number.isInteger(rec.cost_nano)).toBe(true);
  });

  it("resolves even when the release fails", async () => {
    const slot = fakeSlot({ release: () => Promise.reject(new Error("ledger write failed")) });
    await expect(settle(slot, usageRecord(facts(), { status: 200, ended: "completed" }))).resolves.toBeUndefined();
  });
});

interface SlotLog {
  released: (UsageRecord | undefined)[];
  keepAlive: { startedAt: number; stoppedAt?: number }[];
}

function fakeSlot(over: Partial<Slot> = {}, log: SlotLog = { released: [], keepAlive: [] }): Slot {
  return {
    caller: {
      id: "k",
      name: "k",
      tier: "V3",
      max_concurrency: null,
      daily_budget_cny: null,
      daily_token_limit: null,
      fallback_models: null,
      webhook_urls: null,
    },
    limit: 10,
    inFlight: 1,
    model: DEFAULT_CATALOG.models[0]!,
    account: "default",
    pool: `default:${DEFAULT_CATALOG.models[0]!.id}`,
    next: async () => false,
    renew: async () => true,
    release: async (u) => void log.released.push(u),
    keepAlive: () => {
      const entry: { startedAt: number; stoppedAt?: number } = { startedAt: Date.now() };
      log.keepAlive.push(entry);
      return () => void (entry.stoppedAt ??= Date.now());
    },
    ...over,
  };
}

const ctx: WaitUntil = { waitUntil: () => undefined };
const simEnv = { ...env, GLM_BASE_URL: `${SIM}/api/paas/v4`, UPSTREAM_TIMEOUT_MS: "5000" } as Env;

function request(content: string, stream: boolean) {
  const body = JSON.stringify({ ...chatBody(content), stream, request_id: crypto.randomUUID() });
  return {
    env: simEnv,
    ctx,
    model,
    body,
    messages: [],
    stream,
    requestId: "r",
    kind: "chat" as const,
    acceptLanguage: null,
    signal: null,
    startedAt: Date.now(),
  };
}

describe("send", () => {
  it("keeps the leases alive from the call until GLM's answer flows, for every caller (chat, summary steps, jobs)", async () => {
    // Plain: renewed on a timer until the whole answer is in.
    const log: SlotLog = { released: [], keepAlive: [] };
    const started = Date.now();
    const sent = await send(fakeSlot({}, log), request("slow start [[sim: tokens=3 ttft=300]]", false));
    expect(sent.kind).toBe("answer");
    expect(log.keepAlive).toHaveLength(1);
    expect(log.keepAlive[0]!.startedAt - started).toBeLessThan(100);
    expect(log.keepAlive[0]!.stoppedAt! - started).toBeGreaterThanOrEqual(280);
    // Streamed: renewed on a timer until the headers, then by the relay — also while GLM thinks before
    // its first byte (the final step of a summary streams this way).
    const slog: SlotLog = { released: [], keepAlive: [] };
    const sstarted = Date.now();
    const s = await send(fakeSlot({}, slog), request("slow start [[sim: tokens=3 ttft=300]]", true));
    if (s.kind === "stream") await new Response(s.body).text();
    expect(slog.keepAlive).toHaveLength(1);
    expect(slog.keepAlive[0]!.stoppedAt).toBeGreaterThanOrEqual(sstarted);
  });

  it("settles exactly once, with a record, on success, error answers and an unreachable upstream", async () => {
    const cases: [string, boolean, Env][] = [
      ["ok [[sim: tokens=3]]", true, simEnv],
      ["ok [[sim: tokens=3]]", false, simEnv],
      ["no [[sim: error=1305]]", false, simEnv],
      ["cut [[sim: tokens=30 break_after=4]]", true, simEnv],
      ["down", false, { ...simEnv, GLM_BASE_URL: "http://127.0.0.1:9/api/paas/v4" } as Env],
    ];
    for (const [content, stream, e] of cases) {
      const log: SlotLog = { released: [], keepAlive: [] };
      const sent = await send(fakeSlot({}, log), { ...request(content, stream), env: e });
      if (sent.kind === "stream") await new Response(sent.body).text();
      const o = sent.kind === "stream" ? await sent.outcome : sent.outcome;
      await sleep(10);
      expect(log.released, content).toHaveLength(1);
      expect(log.released[0]).toEqual(o.record);
    }
  });

  it("answers, and settles, when the release rejects", async () => {
    const sent = await send(
      fakeSlot({ release: () => Promise.reject(new Error("object gone")) }),
      request("ok [[sim: tokens=2]]", false),
    );
    expect(sent.kind === "answer" && sent.status).toBe(200);
  });
});

describe("admission", () => {
  it("never admits a caller that leaves while it waits in line, and bills it nothing", async () => {
    const k = await createKey({ tier: "V0", max_concurrency: 1 });
    const cred = { kind: "internal" as const, keyId: k.id };
    const holder = await admit({ env: simEnv, cred, model, queueTimeoutMs: 0, origin: null, signal: null });
    const leave = new AbortController();
    const started = Date.now();
    const waiting = admit({ env: simEnv, cred, model, queueTimeoutMs: 10_000, origin: null, signal: leave.signal });
    setTimeout(() => leave.abort(), 200);
    await expect(waiting).rejects.toMatchObject({ status: 408 });
    // It stopped waiting when its caller left, not when its wait ran out or a slot came free.
    expect(Date.now() - started).toBeLessThan(3_000);
    const inFlight = async () =>
      Object.values(
        ((await (await admin("GET", `/keys/${k.id}`)).json()) as { in_flight: Record<string, number> }).in_flight,
      ).reduce((a, n) => a + n, 0);
    expect(await inFlight()).toBe(1);
    await holder.release();
    await sleep(1_500); // longer than a wait slice: a waiter still in line would have been admitted by now
    expect(await inFlight()).toBe(0);
    const recs = ((await (await admin("GET", `/keys/${k.id}/requests`)).json()) as { data: unknown[] }).data;
    expect(recs).toEqual([]);
  });
});

describe("a body whose estimate would throw", () => {
  it("still releases the slot and writes an estimated record when the stream breaks", async () => {
    const k = await createKey({ tier: "V3" });
    // tool_calls objects are loose: an extra field nested deep enough makes JSON.stringify (used by the
    // estimate) overflow the stack. Parsing it is fine.
    const deep = "[".repeat(20_000) + "]".repeat(20_000);
    const raw = JSON.stringify({
      model: "glm-4-flash-250414",
      stream: true,
      request_id: "deep-1",
      messages: [
        { role: "user", content: "cut [[sim: tokens=30 break_after=3]]" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" }, extra: "X" }],
        },
      ],
    }).replace('"extra":"X"', `"extra":${deep}`);
    const res = await chat(k.key, raw);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(JSON.parse(sseData(text).at(-1)!)).toMatchObject({ error: { code: "1234" } });
    const info = await waitFor(
      async () => (await (await admin("GET", `/keys/${k.id}`)).json()) as { in_flight: Record<string, number> },
      (i) => Object.values(i.in_flight).every((n) => n === 0),
    );
    expect(Object.values(info.in_flight).every((n) => n === 0)).toBe(true);
    const recs = await waitFor(
      async () =>
        (
          (await (await admin("GET", `/keys/${k.id}/requests`)).json()) as {
            data: { request_id: string; estimated: boolean; prompt_tokens: number }[];
          }
        ).data,
      (d) => d.length === 1,
    );
    expect(recs[0]).toMatchObject({ request_id: "deep-1", estimated: true });
    expect(recs[0]!.prompt_tokens).toBeGreaterThan(raw.length / 8);
  });
});

describe("request ids must be header values", () => {
  const bad: [string, string][] = [
    ["non-ASCII", "请求-1"],
    ["a control character", "a\u0001b"],
    ["over 128 characters", "x".repeat(129)],
  ];
  for (const [what, id] of bad) {
    it(`refuses a body request_id with ${what} (400 1214), before any slot is taken`, async () => {
      const k = await createKey({ tier: "V3", max_concurrency: 1 });
      const res = await chat(k.key, chatBody("hi", { request_id: id }));
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({
        error: { code: "1214", message: expect.stringContaining("request_id") },
      });
      const info = (await (await admin("GET", `/keys/${k.id}`)).json()) as { in_flight: Record<string, number> };
      expect(info.in_flight).toEqual({});
    });
  }

  it("refuses an x-request-id header that is too long (400 1214 naming it), and accepts any printable ASCII one", async () => {
    const k = await createKey({ tier: "V3" });
    const long = await chat(k.key, chatBody("hi"), { "x-request-id": "y".repeat(129) });
    expect(long.status).toBe(400);
    expect(await long.json()).toMatchObject({
      error: { code: "1214", message: expect.stringContaining("x-request-id") },
    });
    const ok = await chat(k.key, chatBody("hi [[sim: tokens=2]]"), { "x-request-id": "trace/2026 #7=a+b" });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("x-request-id")).toBe("trace/2026 #7=a+b");
  });
});

describe("one table of GLM codes", () => {
  it("gives chat, summaries and jobs the same answer for every code", () => {
    for (const [code, rule] of Object.entries(GLM_CODES)) {
      const job = jobClassify(rule.status, { code, message: "m" }).kind;
      expect(job, code).toBe(rule.noSlot ? "wait" : rule.transient ? "transient" : "fail");
      if (code === "1261") continue; // a summary splits its input instead
      const summary = summaryClassify(rule.status, code, "{}", "step");
      expect(summary instanceof Transient, code).toBe(rule.transient);
    }
    expect(codeRule("1303").transient).toBe(true);
    expect(codeRule("1113").transient).toBe(false);
    expect(clientStatus("1305", 500)).toBe(429);
    expect(codeRule("9999", 502)).toMatchObject({ status: 502, transient: true });
    expect(codeRule("9999", 400)).toMatchObject({ status: 400, transient: false });
  });
});
