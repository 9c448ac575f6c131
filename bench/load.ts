// The benchmark's load: streamed completions at a fixed concurrency, each read to its last byte with its time
// to first byte, and throughput at a fixed concurrency with autocannon (which also reads every response to
// its end). A target is anything that speaks GLM's chat API at a base URL: the simulator itself, the floor
// Worker, or the gateway.
import http from "node:http";
import autocannon from "autocannon";
import { pool, streamRequest } from "../test-support/http.ts";

export interface Target {
  name: string;
  /** Base URL that /chat/completions is appended to. */
  base: string;
  authorization: string;
}

export function chatBody(content: string, stream: boolean): string {
  return JSON.stringify({ model: "glm-4-flash-250414", stream, messages: [{ role: "user", content }] });
}

export interface StreamRun {
  ttfb: number[];
  total: number[];
  errors: string[];
  wallMs: number;
}

/** n streamed completions, `concurrency` at a time over kept-alive connections, each read to the end. */
export async function streams(t: Target, n: number, concurrency: number, content: string): Promise<StreamRun> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const body = chatBody(content, true);
  const out: StreamRun = { ttfb: [], total: [], errors: [], wallMs: 0 };
  const started = performance.now();
  try {
    await pool(n, concurrency, async () => {
      try {
        const r = await streamRequest({
          url: `${t.base}/chat/completions`,
          method: "POST",
          agent,
          body,
          timeoutMs: 60_000,
          headers: { authorization: t.authorization, "content-type": "application/json" },
        });
        if (r.status !== 200 || !r.complete || r.ttfbMs === undefined) {
          out.errors.push(`${r.status} ${r.error ?? ""}`.trim());
          return;
        }
        out.ttfb.push(r.ttfbMs);
        out.total.push(r.totalMs);
      } catch (err) {
        out.errors.push(String(err));
      }
    });
  } finally {
    agent.destroy();
  }
  out.wallMs = performance.now() - started;
  return out;
}

export interface Throughput {
  rps: number;
  ok: number;
  failed: number;
}

/** Completed 2xx requests per second over `seconds`, `connections` at a time, bodies read in full. */
export async function throughput(
  t: Target,
  stream: boolean,
  content: string,
  connections: number,
  seconds: number,
): Promise<Throughput> {
  const result = await autocannon({
    url: `${t.base}/chat/completions`,
    method: "POST",
    headers: { authorization: t.authorization, "content-type": "application/json" },
    body: chatBody(content, stream),
    connections,
    duration: seconds,
    timeout: 30,
  });
  const ok = result["2xx"];
  // errors counts timeouts too.
  return { rps: ok / (result.duration || seconds), ok, failed: result.non2xx + result.errors };
}
