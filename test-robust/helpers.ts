// Helpers for the end-to-end suites that drive the gateway under `wrangler dev` (test-node/harness.ts):
// chat requests as raw HTTP, the slot and upstream counters the suites check after every part (the
// gateway's own per-key in_flight and the simulator's in_flight), usage records, and GLM's error shape.
import { ADMIN_TOKEN, type E2E } from "../test-support/harness.ts";
import { rawRequest, streamRequest, type AbortPoint, type StreamResult } from "../test-support/http.ts";

export const MODEL = "glm-4-flash-250414";

/**
 * How soon after a client disconnect the runtime reports (the stream's cancel when a write to the gone
 * client fails) its slots must be free again. Disconnects the runtime does not report — while neither side
 * sends anything — are bounded by the upstream idle timeout or, failing that, the lease expiry.
 */
export const REPORTED_DISCONNECT_BOUND_MS = 1_000;

/** Every request in the suites has a client timeout; reaching it is a hang, a failure. */
export const CLIENT_TIMEOUT_MS = 20_000;

export interface ChatOptions {
  key: string;
  content: string;
  stream?: boolean;
  requestId?: string;
  headers?: Record<string, string>;
  extra?: Record<string, unknown>;
  abort?: AbortPoint;
  signal?: AbortSignal;
  onHeaders?: (status: number) => void;
  timeoutMs?: number;
}

export function chatBody(o: Pick<ChatOptions, "content" | "stream" | "requestId" | "extra">): string {
  return JSON.stringify({
    model: MODEL,
    messages: [{ role: "user", content: o.content }],
    ...(o.stream ? { stream: true } : {}),
    ...(o.requestId ? { request_id: o.requestId } : {}),
    ...o.extra,
  });
}

/** A chat request read as it arrives (or abandoned at o.abort), body kept. */
export function chat(e: E2E, o: ChatOptions): Promise<StreamResult> {
  return streamRequest({
    url: `${e.url}/v1/chat/completions`,
    method: "POST",
    headers: { authorization: `Bearer ${o.key}`, "content-type": "application/json", ...o.headers },
    body: chatBody(o),
    timeoutMs: o.timeoutMs ?? CLIENT_TIMEOUT_MS,
    keepBody: true,
    ...(o.abort ? { abort: o.abort } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onHeaders ? { onHeaders: o.onHeaders } : {}),
  });
}

async function adminGet<T>(e: E2E, path: string): Promise<T> {
  const res = await rawRequest({
    url: `${e.url}/admin${path}`,
    method: "GET",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    timeoutMs: CLIENT_TIMEOUT_MS,
  });
  if (res.status !== 200) throw new Error(`GET /admin${path}: ${res.status} ${res.body.toString()}`);
  return JSON.parse(res.body.toString()) as T;
}

/** Slots a key holds right now, summed over models (GET /admin/keys/{id} in_flight). */
export async function keyInFlight(e: E2E, keyId: string): Promise<number> {
  const info = await adminGet<{ in_flight: Record<string, number> }>(e, `/keys/${keyId}`);
  return Object.values(info.in_flight).reduce((a, b) => a + b, 0);
}

export interface UsageRow {
  id: string;
  request_id: string;
  model: string;
  stream: boolean;
  status: number;
  ended: string;
  prompt_tokens: number;
  completion_tokens: number;
  estimated: boolean;
  /** Which attempt of its request this record is (retries before the first byte each have one). */
  attempt?: number;
}

/** A key's most recent per-request usage records (at most 1,000: keep a suite's key under that). */
export async function usageRows(e: E2E, keyId: string): Promise<UsageRow[]> {
  return (await adminGet<{ data: UsageRow[] }>(e, `/keys/${keyId}/requests?limit=1000`)).data;
}

export async function usageTotals(
  e: E2E,
  keyId: string,
): Promise<{ requests: number; prompt_tokens: number; completion_tokens: number }> {
  return (
    await adminGet<{ totals: { requests: number; prompt_tokens: number; completion_tokens: number } }>(
      e,
      `/usage?key_id=${keyId}`,
    )
  ).totals;
}

/** Polls until ok(value) or the deadline (performance.now() based); returns the last value and when. */
export async function pollUntil<T>(
  fn: () => Promise<T>,
  ok: (v: T) => boolean,
  deadline: number,
  everyMs = 20,
): Promise<{ value: T; ok: boolean; at: number }> {
  for (;;) {
    const value = await fn();
    const at = performance.now();
    if (ok(value)) return { value, ok: true, at };
    if (at >= deadline) return { value, ok: false, at };
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface Quiet {
  ok: boolean;
  /** ms from `since` until no slot was held and no upstream request was open (or the bound, if never). */
  ms: number;
  keySlots: number[];
  simInFlight: number;
}

/**
 * Waits until none of the keys holds a slot and the simulator has no request open, at most until
 * since + boundMs. The proof that a run left nothing behind.
 */
export async function quiet(e: E2E, keyIds: readonly string[], since: number, boundMs: number): Promise<Quiet> {
  const r = await pollUntil(
    async () => ({
      keySlots: await Promise.all(keyIds.map((id) => keyInFlight(e, id))),
      simInFlight: e.sim.sim.stats().in_flight,
    }),
    (v) => v.simInFlight === 0 && v.keySlots.every((n) => n === 0),
    since + boundMs,
  );
  return { ok: r.ok, ms: Math.round(r.at - since), ...r.value };
}

/** The gateway answers its liveness check: checked after each part of a suite. */
export async function healthy(e: E2E): Promise<boolean> {
  const res = await rawRequest({ url: `${e.url}/healthz`, method: "GET", timeoutMs: CLIENT_TIMEOUT_MS });
  return res.status === 200;
}

/** True when text is GLM's error shape: {"error":{"code":"<string>","message":"<string>"}} and nothing else at the top. */
export function isGlmError(text: string): boolean {
  try {
    const v = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    return (
      typeof v === "object" &&
      v !== null &&
      Object.keys(v).length === 1 &&
      typeof v.error?.code === "string" &&
      v.error.code !== "" &&
      typeof v.error.message === "string" &&
      v.error.message !== ""
    );
  } catch {
    return false;
  }
}

export { sseData } from "../test-support/sse.ts";

/** Deterministic PRNG (mulberry32) so every suite replays the same run from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
