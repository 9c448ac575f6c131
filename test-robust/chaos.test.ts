// Upstream chaos: the simulator answers at random (seeded) with 429 and 500, breaks streams and connections,
// hangs, and slows down. Every request must end with a clear status or, once a stream has started, with either
// GLM's [DONE] or an in-band error event; the usage records must agree with what each client saw and with what
// the upstream reported; and no slot may be held afterwards.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startE2E, type E2E } from "../test-support/harness.ts";
import { pool, streamRequest } from "../test-support/http.ts";
import {
  REPORTED_DISCONNECT_BOUND_MS,
  chat,
  healthy,
  isGlmError,
  pollUntil,
  quiet,
  sseData,
  usageRows,
  usageTotals,
  type UsageRow,
} from "./helpers.ts";

const REQUESTS = 400;
const CONCURRENCY = 20;
/** Short, so hangs end within the run: headers within it, and no silence mid-stream longer than it. */
const UPSTREAM_TIMEOUT_MS = 2_500;
const CHAOS = { seed: 42, errorRate: 0.15, breakRate: 0.15, hangRate: 0.1, slowRate: 0.1 };

let e: E2E;

beforeAll(async () => {
  // Chaos fails calls at random; a circuit (made for an account that is down) would open on a random streak
  // and answer 503 for its cooldown, and retries before the first byte would turn most failures into
  // successes, so the suite could no longer see every kind of ending. It is about how each request ends and
  // what is recorded for it: one attempt per request, circuits closed (test/pool.test.ts covers both).
  e = await startE2E({
    vars: {
      GLM_ACCOUNT_TIER: "V3",
      UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS),
      UPSTREAM_CIRCUIT_FAILURES: "1000000",
      UPSTREAM_MAX_ATTEMPTS: "1",
    },
  });
});

afterAll(async () => {
  await e?.close();
});

type Seen =
  | { kind: "done"; usage: { prompt_tokens: number; completion_tokens: number } }
  | { kind: "in-band error"; code: string }
  | { kind: "error status"; status: number; code: string };

/** What the client saw, or why the answer is not a clear ending. */
function classify(r: Awaited<ReturnType<typeof chat>>, stream: boolean): Seen | string {
  if (r.error !== undefined) return `transport error: ${r.error}`;
  if (!r.complete) return "answer never ended";
  if (r.status !== 200) {
    if (!isGlmError(r.body)) return `status ${r.status} without a GLM error body: ${r.body.slice(0, 200)}`;
    return {
      kind: "error status",
      status: r.status,
      code: (JSON.parse(r.body) as { error: { code: string } }).error.code,
    };
  }
  if (!stream) {
    const body = JSON.parse(r.body) as { usage?: { prompt_tokens: number; completion_tokens: number } };
    return body.usage ? { kind: "done", usage: body.usage } : `200 without usage: ${r.body.slice(0, 200)}`;
  }
  const events = sseData(r.body);
  const last = events.at(-1);
  if (last === "[DONE]") {
    const final = JSON.parse(events.at(-2) ?? "{}") as { usage?: { prompt_tokens: number; completion_tokens: number } };
    return final.usage ? { kind: "done", usage: final.usage } : "[DONE] without a final chunk carrying usage";
  }
  if (events.includes("[DONE]")) return "[DONE] before the end of the stream";
  if (last === undefined || !isGlmError(last))
    return `stream ended without [DONE] or an in-band error: …${r.body.slice(-200)}`;
  return { kind: "in-band error", code: (JSON.parse(last) as { error: { code: string } }).error.code };
}

/** The usage record each kind of ending must leave. */
function expectRecord(row: UsageRow | undefined, seen: Seen): void {
  expect(row).toBeDefined();
  if (seen.kind === "done") {
    const { prompt_tokens, completion_tokens } = seen.usage;
    expect(row).toMatchObject({ status: 200, ended: "completed", estimated: false, prompt_tokens, completion_tokens });
  } else if (seen.kind === "in-band error") {
    expect(row).toMatchObject({ status: 200, estimated: true });
    expect(["upstream_break", "timeout", "upstream_error"]).toContain(row!.ended);
  } else if (seen.status === 502 || seen.status === 504) {
    // The gateway's own answer for an upstream that broke or hung before answering: tokens estimated.
    expect(row).toMatchObject({
      status: seen.status,
      ended: seen.status === 504 ? "timeout" : "upstream_break",
      estimated: true,
    });
  } else {
    // GLM's own error answer, passed through: nothing was generated.
    expect(row).toMatchObject({ status: seen.status, ended: "upstream_error", estimated: false, completion_tokens: 0 });
  }
}

describe("upstream chaos", () => {
  it("has an upstream that notices every client leaving a hanging request (the count this suite trusts)", async () => {
    // Straight to the simulator, no gateway: 50 hanging requests among 150 quick ones, each abandoned.
    const before = e.sim.sim.stats().in_flight;
    await pool(200, 20, (i) =>
      streamRequest({
        url: `${e.sim.baseUrl}/chat/completions`,
        method: "POST",
        timeoutMs: 10_000,
        headers: { authorization: "Bearer sim", "content-type": "application/json" },
        body: JSON.stringify({
          model: "glm-4-flash-250414",
          stream: i % 3 === 0,
          messages: [{ role: "user", content: `probe ${i} ${i % 4 === 0 ? "[[sim: hang]]" : "[[sim: tokens=5]]"}` }],
        }),
        ...(i % 4 === 0 ? { abort: { at: "before-headers" as const, afterMs: 100 } } : {}),
      }),
    );
    const settled = await pollUntil(
      async () => e.sim.sim.stats().in_flight,
      (n) => n === before,
      performance.now() + REPORTED_DISCONNECT_BOUND_MS,
    );
    expect(settled.value).toBe(before);
  });

  it(`${REQUESTS} requests against an upstream that fails at random all end clearly, with consistent usage`, async () => {
    const key = await e.createKey({ tier: "V3" });
    e.sim.sim.reset();
    e.sim.sim.configure({ chaos: CHAOS });
    const streamed = (i: number) => i % 10 < 7;
    const results = await pool(REQUESTS, CONCURRENCY, (i) =>
      chat(e, { key: key.key, content: `chaos ${i}`, stream: streamed(i), requestId: `chaos-${i}`, timeoutMs: 30_000 }),
    );
    const lastEnd = performance.now();

    const seen = results.map((r, i) => classify(r, streamed(i)));
    const unclear = seen.flatMap((s, i) => (typeof s === "string" ? [`chaos-${i}: ${s}`] : []));
    expect(unclear).toEqual([]);
    const outcomes = seen as Seen[];
    const statuses = new Set(outcomes.flatMap((s) => (s.kind === "error status" ? [s.status] : [])));
    for (const s of statuses) expect([429, 500, 502, 504]).toContain(s);
    const count = (k: Seen["kind"]) => outcomes.filter((s) => s.kind === k).length;
    const sim = e.sim.sim.stats();
    console.log(
      `[chaos] ${REQUESTS} requests: ${count("done")} complete, ${count("in-band error")} ended by an in-band error, ` +
        `${count("error status")} error statuses (${[...statuses].sort().join(", ")}); upstream: ${sim.completed} completed, ${sim.errors} errors, ${sim.cancelled} cancelled or hung`,
    );
    // The chaos must actually have produced every kind of ending, or this test proves nothing.
    expect(count("done")).toBeGreaterThan(0);
    expect(count("in-band error")).toBeGreaterThan(0);
    expect(statuses.size).toBeGreaterThanOrEqual(3);

    const q = await quiet(e, [key.id], lastEnd, REPORTED_DISCONNECT_BOUND_MS);
    if (!q.ok) {
      // Say which requests are still open upstream and what their clients saw, to make a failure actionable.
      const log = (await (await fetch(`${e.sim.url}/_sim/requests?limit=1000`)).json()) as {
        request_id: string;
        ended: string | null;
      }[];
      const open = log
        .filter((r) => r.ended === null)
        .map((r) => {
          const c = results[Number(r.request_id.split("-")[1])];
          return `${r.request_id}: client saw ${c?.status} after ${c?.totalMs.toFixed(0)} ms ${c?.body.slice(0, 120)}`;
        });
      console.log(`[chaos] not quiet: ${JSON.stringify(q)}; open upstream: ${open.join(" | ")}`);
    }
    expect(q).toMatchObject({ ok: true, simInFlight: 0 });
    expect(await healthy(e)).toBe(true);

    // One record per attempt (a failure before the first byte is retried, and each attempt is recorded):
    // every request's last attempt matches what its client saw, every earlier one is a failure GLM did not
    // answer usefully; sums equal to what the upstream reported.
    const rows = await usageRows(e, key.id);
    const byId = new Map<string, UsageRow>();
    for (const r of rows) {
      const prior = byId.get(r.request_id);
      if (!prior || (r.attempt ?? 1) > (prior.attempt ?? 1)) byId.set(r.request_id, r);
    }
    expect(byId.size).toBe(REQUESTS);
    outcomes.forEach((s, i) => expectRecord(byId.get(`chaos-${i}`), s));
    for (const r of rows) {
      if (byId.get(r.request_id) === r) continue;
      expect(["upstream_error", "upstream_break", "timeout"]).toContain(r.ended);
      expect(r.completion_tokens === 0 || r.estimated).toBe(true);
    }
    const exact = rows.filter((r) => !r.estimated);
    expect(exact.reduce((n, r) => n + r.completion_tokens, 0)).toBe(sim.usage.completion_tokens);
    expect(exact.reduce((n, r) => n + r.prompt_tokens, 0)).toBe(sim.usage.prompt_tokens);
    const totals = await usageTotals(e, key.id);
    expect(totals.requests).toBe(rows.length); // attempts, as the ledger counts them
    expect(totals.completion_tokens).toBe(rows.reduce((n, r) => n + r.completion_tokens, 0));
  });
});
