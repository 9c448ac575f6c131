// HTTP clients for the benchmark and the end-to-end suites, on node:http rather than fetch: it sends exactly
// the bytes asked for (raw bodies, Latin-1 header bytes that are not UTF-8), stamps the first body byte
// without a stream layer in between, and can walk away from a response at a chosen point by destroying the
// socket — a real client disconnect. Every call has a hard timeout, so nothing here can hang a run.
import http from "node:http";
import { performance } from "node:perf_hooks";

export interface RawRequest {
  /** Full URL; the path is sent as given (percent-encoding and all). */
  url: string;
  method: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  timeoutMs: number;
  agent?: http.Agent;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  ms: number;
}

/** The request took longer than its timeout: a hang, which every suite treats as a failure. */
export class TimeoutError extends Error {
  constructor(ms: number, what: string) {
    super(`no complete answer within ${ms} ms: ${what}`);
    this.name = "TimeoutError";
  }
}

function open(r: RawRequest): http.ClientRequest {
  const u = new URL(r.url);
  const body = r.body === undefined ? undefined : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body);
  const headers: Record<string, string | number> = { ...r.headers };
  if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === "content-length"))
    headers["content-length"] = body.length;
  const req = http.request({
    host: u.hostname,
    port: u.port,
    // The raw path, not URL's normalised one: the fuzzer sends odd paths on purpose.
    path: r.url.slice(u.origin.length) || "/",
    method: r.method,
    headers,
    // Latin-1 header bytes (not UTF-8) pass through; node itself refuses only control characters.
    agent: r.agent ?? false,
  });
  if (body !== undefined) req.end(body);
  else req.end();
  return req;
}

/** One request, read to the end. Rejects with TimeoutError when the whole exchange exceeds timeoutMs. */
export function rawRequest(r: RawRequest): Promise<RawResponse> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = open(r);
    const timer = setTimeout(() => req.destroy(new TimeoutError(r.timeoutMs, `${r.method} ${r.url}`)), r.timeoutMs);
    req.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.once("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      let ended = false;
      res.once("end", () => {
        ended = true;
        clearTimeout(timer);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          ms: performance.now() - t0,
        });
      });
      res.once("close", () => {
        clearTimeout(timer);
        if (!ended) reject(new Error(`connection closed before the response to ${r.method} ${r.url} ended`));
      });
    });
  });
}

/** Where a streaming client walks away; none reads the answer to its end. */
export type AbortPoint =
  { at: "before-headers"; afterMs: number } | { at: "after-headers" } | { at: "after-events"; events: number };

export interface StreamRequest extends RawRequest {
  abort?: AbortPoint;
  /** Walks away when this fires, wherever the answer is (tests that hold streams open, then drop them). */
  signal?: AbortSignal;
  /** Called when the response headers arrive, before any body byte. */
  onHeaders?: (status: number) => void;
  /** Keep the body text (tests); the benchmark only counts bytes. */
  keepBody?: boolean;
}

export interface StreamResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** ms from sending the request to its response headers, and to the first body byte. */
  headersMs?: number;
  ttfbMs?: number;
  totalMs: number;
  bytes: number;
  /** SSE events seen (a blank line ends one). */
  events: number;
  body: string;
  /** The client disconnected on purpose; abortedAt is performance.now() at that moment. */
  aborted: boolean;
  abortedAt?: number;
  /** The body ended normally (false when aborted or cut off). */
  complete: boolean;
  /** A transport failure other than our own disconnect (the server cut the connection). */
  error?: string;
}

/**
 * Sends a request and reads its answer as it arrives, counting SSE events, until the end or the abort
 * point. Resolves (never rejects) with what happened, except on timeout, which rejects: a hang is a failure.
 */
export function streamRequest(r: StreamRequest): Promise<StreamResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const out: StreamResult = {
      status: 0,
      headers: {},
      totalMs: 0,
      bytes: 0,
      events: 0,
      body: "",
      aborted: false,
      complete: false,
    };
    let settled = false;
    let lastByte = -1;
    const decoder = new TextDecoder();
    const done = (extra: Partial<StreamResult> = {}) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(beforeHeaders);
      Object.assign(out, extra, { totalMs: performance.now() - t0 });
      resolve(out);
    };
    const walkAway = () => {
      out.aborted = true;
      out.abortedAt = performance.now();
      req.destroy();
      done();
    };
    const req = open(r);
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      req.destroy();
      const state =
        out.status === 0 ? "no response headers" : `status ${out.status}, ${out.events} events, ${out.bytes} bytes`;
      reject(new TimeoutError(r.timeoutMs, `${r.method} ${r.url} (${state})`));
    }, r.timeoutMs);
    const beforeHeaders = r.abort?.at === "before-headers" ? setTimeout(walkAway, r.abort.afterMs) : undefined;
    if (r.signal?.aborted) walkAway();
    r.signal?.addEventListener("abort", () => settled || walkAway(), { once: true });
    req.once("error", (err) => done({ error: err.message }));
    req.once("response", (res) => {
      clearTimeout(beforeHeaders);
      out.status = res.statusCode ?? 0;
      out.headers = res.headers;
      out.headersMs = performance.now() - t0;
      r.onHeaders?.(out.status);
      if (r.abort?.at === "after-headers" && out.status === 200) return walkAway();
      const stopAfter = r.abort?.at === "after-events" && out.status === 200 ? r.abort.events : Infinity;
      res.on("data", (chunk: Buffer) => {
        if (settled) return;
        out.ttfbMs ??= performance.now() - t0;
        out.bytes += chunk.length;
        if (r.keepBody) out.body += decoder.decode(chunk, { stream: true });
        // Count event ends ("\n\n"), one split across two chunks included.
        for (let i = 0; i < chunk.length; i++) {
          const b = chunk[i]!;
          if (b === 10 && lastByte === 10) out.events++;
          lastByte = b;
        }
        if (out.events >= stopAfter) walkAway();
      });
      res.once("error", (err) => done({ error: err.message }));
      res.once("end", () => done({ complete: true }));
      res.once("close", () => done({ error: "connection closed before the response ended" }));
    });
  });
}

/** Runs fn(0..n-1) with at most `concurrency` calls in flight; results in index order. */
export async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      results[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return results;
}

/** Percentile (nearest rank) of unsorted samples; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}
