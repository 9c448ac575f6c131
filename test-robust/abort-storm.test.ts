// Abort storm: 1,000 streamed completions abandoned at random points — before the response headers, right
// after them, or after some events — 50 at a time. Within the stated bound after the last disconnect no slot
// may be held and no upstream request left open, and every request that reached the upstream must have been
// recorded exactly once, as abandoned or (when its answer had been relayed in full) completed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startE2E, type E2E } from "../test-support/harness.ts";
import { pool, type AbortPoint } from "../test-support/http.ts";
import { REPORTED_DISCONNECT_BOUND_MS, chat, healthy, quiet, rng, usageRows } from "./helpers.ts";

const STREAMS = 1_000;
const CONCURRENCY = 50;
const TOKENS = 100;
/** Generous: 50 streams at once through `wrangler dev` on two busy cores can run several times slower than paced. */
const STREAM_TIMEOUT_MS = 60_000;

let e: E2E;

beforeAll(async () => {
  // Account tier V3 and a V3 key: 50 at once stays under every limit, so nothing is refused.
  e = await startE2E({ vars: { GLM_ACCOUNT_TIER: "V3" } });
});

afterAll(async () => {
  await e?.close();
});

describe("abort storm", () => {
  it(`${STREAMS} streams abandoned at random points leave no slot held and no upstream request open`, async () => {
    const key = await e.createKey({ tier: "V3" });
    const random = rng(1_000);
    const points: AbortPoint[] = Array.from({ length: STREAMS }, () => {
      const x = random();
      if (x < 0.15) return { at: "before-headers", afterMs: Math.floor(random() * 30) };
      if (x < 0.3) return { at: "after-headers" };
      if (x < 0.4) return { at: "after-events", events: TOKENS }; // every token, not the final chunk nor [DONE]
      return { at: "after-events", events: 1 + Math.floor(random() * (TOKENS - 1)) };
    });
    e.sim.sim.reset();
    const started = performance.now();
    const hangs: string[] = [];
    const results = await pool(STREAMS, CONCURRENCY, (i) =>
      chat(e, {
        key: key.key,
        content: `storm ${i} [[sim: tokens=${TOKENS} delay=10]]`,
        stream: true,
        requestId: `storm-${i}`,
        abort: points[i]!,
        timeoutMs: STREAM_TIMEOUT_MS,
      }).catch((err: unknown) => {
        hangs.push(`storm-${i} ${JSON.stringify(points[i])}: ${String(err)}`);
        return undefined;
      }),
    ).then((all) => all.filter((r) => r !== undefined));
    expect(hangs).toEqual([]);
    const lastAbort = Math.max(...results.map((r) => r.abortedAt ?? 0));

    // Every client left on purpose; none met an error or a status other than 200 first.
    const odd = results.filter((r) => !r.aborted || r.error !== undefined || (r.status !== 0 && r.status !== 200));
    expect(odd.map((r) => `${r.status} ${r.error ?? ""} ${r.body.slice(0, 120)}`)).toEqual([]);

    const q = await quiet(e, [key.id], lastAbort, REPORTED_DISCONNECT_BOUND_MS);
    const sim = e.sim.sim.stats();
    console.log(
      `[abort storm] ${STREAMS} streams in ${Math.round(lastAbort - started)} ms; quiet ${q.ms} ms after the last disconnect ` +
        `(bound ${REPORTED_DISCONNECT_BOUND_MS} ms); upstream saw ${sim.total}: ${sim.cancelled} cancelled, ${sim.completed} completed`,
    );
    expect(q).toMatchObject({ ok: true, simInFlight: 0 });
    expect(q.keySlots).toEqual([0]);
    expect(sim.completed + sim.cancelled + sim.errors).toBe(sim.total);
    expect(await healthy(e)).toBe(true);

    // Usage: one record per request that reached the upstream, none twice, each abandoned or completed.
    const reached = (await (await fetch(`${e.sim.url}/_sim/requests?limit=1000`)).json()) as { request_id: string }[];
    const rows = await usageRows(e, key.id);
    const recorded = new Set(rows.map((r) => r.request_id));
    expect(recorded.size).toBe(rows.length);
    expect(reached.filter((r) => !recorded.has(r.request_id)).map((r) => r.request_id)).toEqual([]);
    expect(rows.filter((r) => r.ended !== "client_abort" && r.ended !== "completed")).toEqual([]);
    // A request recorded as completed had its whole answer read by the gateway: its tokens are GLM's own.
    for (const r of rows.filter((x) => x.ended === "completed"))
      expect(r).toMatchObject({ estimated: false, completion_tokens: TOKENS });
  });
});
