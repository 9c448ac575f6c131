// Issue 3's end-to-end proofs of the limiter, against the gateway under `wrangler dev` with the GLM simulator
// as upstream: at twice a key's limit the simulator never sees more than the limit in flight (by its own
// count); clients that disconnect mid-stream free their slots within the stated bound, so as many new requests
// are admitted at once; and a client that vanishes while the upstream is silent is freed by the idle timeout.
// Sized for CI; LIMITER_E2E_FULL=1 runs the full figures (10,000 requests, 1,000 disconnects).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startE2E, type E2E } from "../test-support/harness.ts";
import { pool, type AbortPoint } from "../test-support/http.ts";
import {
  MODEL,
  REPORTED_DISCONNECT_BOUND_MS,
  chat,
  isGlmError,
  keyInFlight,
  pollUntil,
  quiet,
  rng,
  sseData,
  usageRows,
} from "../test-robust/helpers.ts";

const FULL = process.env["LIMITER_E2E_FULL"] === "1";
const REQUESTS = FULL ? 10_000 : 1_000;
const DISCONNECTS = FULL ? 1_000 : 200;
/** Short, so that a silent upstream ends within the test; the relay checks it once a second. */
const UPSTREAM_TIMEOUT_MS = 3_000;
const IDLE_CHECK_MS = 1_000;

let e: E2E;

beforeAll(async () => {
  // Account tier V3: the upstream guard (3,000 for this model) stays out of the way; these tests are about keys.
  e = await startE2E({ vars: { GLM_ACCOUNT_TIER: "V3", UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS) } });
});

afterAll(async () => {
  await e?.close();
});

const log = (msg: string) => console.log(`[limiter e2e] ${msg}`);

describe("a key's in-flight limit, end to end", () => {
  it(
    `never puts more than the limit in flight at the simulator: ${REQUESTS} requests at twice the limit`,
    { timeout: FULL ? 600_000 : 120_000 },
    async () => {
      const limit = 10;
      const key = await e.createKey({ tier: "V0", max_concurrency: limit });
      e.sim.sim.reset();
      const results = await pool(REQUESTS, 2 * limit, (i) =>
        chat(e, { key: key.key, content: `limit ${i} [[sim: tokens=4 delay=2]]`, stream: i % 2 === 0 }),
      );

      let admitted = 0;
      let refused = 0;
      let maxSeenByGateway = 0;
      for (const r of results) {
        if (r.status === 200) {
          admitted++;
          maxSeenByGateway = Math.max(maxSeenByGateway, Number(r.headers["x-concurrency-in-flight"]));
          expect(r.complete).toBe(true);
          if (r.headers["content-type"]?.startsWith("text/event-stream")) expect(sseData(r.body).at(-1)).toBe("[DONE]");
        } else {
          refused++;
          expect(r.status).toBe(429);
          expect(isGlmError(r.body)).toBe(true);
          expect((JSON.parse(r.body) as { error: { code: string } }).error.code).toBe("1302");
          expect(r.headers["retry-after"]).toBeDefined();
        }
      }
      const sim = e.sim.sim.stats();
      log(
        `${REQUESTS} requests at concurrency ${2 * limit}, limit ${limit}: ${admitted} admitted, ${refused} refused with 1302; simulator max in flight ${sim.by_model[MODEL]?.max_in_flight}`,
      );
      // The simulator's own count is the truth: never more than the key's limit at once.
      expect(sim.by_model[MODEL]?.max_in_flight).toBeLessThanOrEqual(limit);
      expect(maxSeenByGateway).toBeLessThanOrEqual(limit);
      // Twice the limit must have met the limit, and only admitted requests may reach the upstream.
      expect(refused).toBeGreaterThan(0);
      expect(admitted).toBeGreaterThan(0);
      expect(sim.total).toBe(admitted);
      expect((await quiet(e, [key.id], performance.now(), REPORTED_DISCONNECT_BOUND_MS)).ok).toBe(true);
    },
  );

  it("admits every waiting request in turn with x-queue-timeout-ms, still never more than the limit", async () => {
    const limit = 5;
    const key = await e.createKey({ tier: "V0", max_concurrency: limit });
    e.sim.sim.reset();
    const results = await pool(100, 4 * limit, (i) =>
      chat(e, {
        key: key.key,
        content: `queued ${i} [[sim: tokens=5 delay=5]]`,
        stream: true,
        headers: { "x-queue-timeout-ms": "30000" },
      }),
    );
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    expect(results.every((r) => sseData(r.body).at(-1) === "[DONE]")).toBe(true);
    const sim = e.sim.sim.stats();
    expect(sim.by_model[MODEL]?.max_in_flight).toBeLessThanOrEqual(limit);
    expect(sim.total).toBe(100);
  });

  it("frees the slots of clients that disconnect mid-stream: as many new requests are admitted within the bound", async () => {
    const limit = 20;
    const key = await e.createKey({ tier: "V0", max_concurrency: limit });
    const long = "[[sim: tokens=1000 delay=20]]"; // 20 s of tokens: every stream outlives the test step
    const deadline = () => performance.now() + 15_000;
    // Fill the key with `limit` streams held open, and check it is full.
    const dropOld = new AbortController();
    const old = Array.from({ length: limit }, (_, i) =>
      chat(e, { key: key.key, content: `hold ${i} ${long}`, stream: true, signal: dropOld.signal }),
    );
    expect(
      (
        await pollUntil(
          () => keyInFlight(e, key.id),
          (n) => n === limit,
          deadline(),
        )
      ).ok,
    ).toBe(true);
    const over = await chat(e, { key: key.key, content: "one too many [[sim: tokens=1]]", stream: true });
    expect(over.status).toBe(429);

    // All of them disconnect mid-stream at once.
    dropOld.abort();
    const dropped = await Promise.all(old);
    expect(dropped.every((r) => r.status === 200 && r.aborted && r.events > 0)).toBe(true);
    const lastAbort = Math.max(...dropped.map((r) => r.abortedAt!));

    // As many new requests, each willing to wait for a slot only until the bound has passed; they too hold
    // their slots, so none can be admitted on a slot another new request gave back.
    const waitMs = Math.max(0, Math.floor(lastAbort + REPORTED_DISCONNECT_BOUND_MS - performance.now()));
    const dropNew = new AbortController();
    let answered = 0;
    const fresh = Array.from({ length: limit }, (_, i) =>
      chat(e, {
        key: key.key,
        content: `next ${i} ${long}`,
        stream: true,
        headers: { "x-queue-timeout-ms": String(waitMs) },
        signal: dropNew.signal,
        onHeaders: () => answered++,
      }),
    );
    // Every one is answered (admitted, or refused once its wait ran out) before any lets go of its slot.
    const all = await pollUntil(
      async () => answered,
      (n) => n === limit,
      deadline(),
    );
    dropNew.abort();
    const next = await Promise.all(fresh);
    log(
      `${limit} disconnects, then ${limit} new requests (queue timeout ${waitMs} ms): statuses ${[...new Set(next.map((r) => r.status))].join(",")}`,
    );
    expect(all.ok).toBe(true);
    expect(next.map((r) => r.status)).toEqual(next.map(() => 200));
    expect(
      (await quiet(e, [key.id], Math.max(...next.map((r) => r.abortedAt!)), REPORTED_DISCONNECT_BOUND_MS)).ok,
    ).toBe(true);
  });

  it(
    `leaves zero slots held within ${REPORTED_DISCONNECT_BOUND_MS} ms after ${DISCONNECTS} clients disconnect at random points of their streams`,
    { timeout: FULL ? 300_000 : 60_000 },
    async () => {
      const key = await e.createKey({ tier: "V3" });
      const random = rng(11);
      e.sim.sim.reset();
      const points: AbortPoint[] = Array.from({ length: DISCONNECTS }, () => {
        const x = random();
        if (x < 0.2) return { at: "before-headers", afterMs: Math.floor(random() * 25) };
        if (x < 0.35) return { at: "after-headers" };
        return { at: "after-events", events: 1 + Math.floor(random() * 150) };
      });
      // Streams of 200 tokens at 5 ms: every client leaves while its upstream is still sending.
      const results = await pool(DISCONNECTS, 50, (i) =>
        chat(e, {
          key: key.key,
          content: `leave ${i} [[sim: tokens=200 delay=5]]`,
          stream: true,
          requestId: `leave-${i}`,
          abort: points[i]!,
        }),
      );
      const failures = results.filter((r) => r.error !== undefined || (!r.aborted && r.status !== 200));
      expect(failures.map((r) => `${r.status} ${r.error ?? r.body.slice(0, 200)}`)).toEqual([]);
      const lastAbort = Math.max(...results.map((r) => r.abortedAt ?? 0));
      const q = await quiet(e, [key.id], lastAbort, REPORTED_DISCONNECT_BOUND_MS);
      log(
        `${DISCONNECTS} disconnects: zero slots held and zero upstream requests open ${q.ms} ms after the last one (bound ${REPORTED_DISCONNECT_BOUND_MS} ms)`,
      );
      expect(q).toMatchObject({ ok: true, simInFlight: 0 });
      expect(q.keySlots).toEqual([0]);

      // Each request that reached the upstream was recorded exactly once, as abandoned or (for the few whose
      // answer had already been relayed in full) completed.
      const reached = await simRequestIds();
      expect(reached.length).toBe(e.sim.sim.stats().total);
      const rows = await usageRows(e, key.id);
      const recorded = rows.map((r) => r.request_id);
      expect(new Set(recorded).size).toBe(recorded.length);
      for (const id of reached) expect(recorded).toContain(id);
      for (const r of rows) expect(["client_abort", "completed"]).toContain(r.ended);
    },
  );

  it("holds the slot of a client that left during an upstream silence only until the upstream idle timeout", async () => {
    const key = await e.createKey({ tier: "V0", max_concurrency: 1 });
    const left = await chat(e, {
      key: key.key,
      content: "silent [[sim: tokens=50 hang_after=2]]",
      stream: true,
      requestId: "silent-1",
      abort: { at: "after-events", events: 1 },
    });
    expect(left).toMatchObject({ status: 200, aborted: true });
    // Nothing is written while the upstream is silent, so the runtime has nothing to report; the upstream
    // request is still open (and still counts at GLM), so the slot stays held until the idle timeout ends it.
    const q = await quiet(
      e,
      [key.id],
      left.abortedAt!,
      UPSTREAM_TIMEOUT_MS + IDLE_CHECK_MS + REPORTED_DISCONNECT_BOUND_MS,
    );
    log(`client gone during an upstream silence: slot free after ${q.ms} ms (idle timeout ${UPSTREAM_TIMEOUT_MS} ms)`);
    expect(q).toMatchObject({ ok: true });
    const rows = await usageRows(e, key.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ request_id: "silent-1", ended: "timeout", estimated: true });
    // And the key's one slot serves the next request at once.
    const after = await chat(e, { key: key.key, content: "after [[sim: tokens=2]]", stream: true });
    expect(after.status).toBe(200);
  });
});

async function simRequestIds(): Promise<string[]> {
  const res = await fetch(`${e.sim.url}/_sim/requests?limit=1000`);
  return ((await res.json()) as { request_id: string | null }[])
    .map((r) => r.request_id)
    .filter((id): id is string => id !== null);
}
