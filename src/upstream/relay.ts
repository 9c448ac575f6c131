// Streams GLM's SSE body to the client byte for byte, as each chunk arrives. The relay only observes:
// it counts events and keeps a bounded tail to read the final usage. It adds bytes in one case only —
// when the upstream stream fails before finishing, an in-band `data: {"error":…}` event ends it, so a
// client never mistakes a truncated answer for a complete one (and never sees a fake [DONE]).
import { SseObserver, type StreamSummary } from "./sse-observer.ts";
import type { UpstreamResponse } from "./client.ts";
import type { Ending } from "../usage/ledger.ts";
import { Codes } from "../errors.ts";

export interface RelayOutcome extends StreamSummary {
  ended: Ending;
  /** Date.now() when the first upstream chunk arrived, if one did. */
  firstByteAt?: number;
}

export interface RelayOptions {
  /** Longest silence from upstream mid-stream before the gateway gives up. */
  idleTimeoutMs: number;
  /** How often to renew the request's concurrency leases while the client is still reading. */
  renewEveryMs: number;
  renew: () => void;
  /** Called exactly once, however the stream ends. */
  onEnd: (outcome: RelayOutcome) => void;
  /** The client's request signal: a disconnect the runtime reports ends the relay at once. */
  clientSignal?: AbortSignal | null;
}

const TICK_MS = 1_000;
const encoder = new TextEncoder();

export function inBandError(code: string, message: string, atBoundary: boolean): Uint8Array {
  const event = `data: ${JSON.stringify({ error: { code, message } })}\n\n`;
  return encoder.encode(atBoundary ? event : `\n\n${event}`);
}

export function relaySse(upstream: UpstreamResponse, opts: RelayOptions): ReadableStream<Uint8Array> {
  const body = upstream.response.body;
  const observer = new SseObserver();
  let finished = false;
  let reading = false;
  let lastActivity = Date.now();
  let lastRenew = Date.now();
  let lastPull = Date.now();
  let firstByteAt: number | undefined;

  const finish = (ended: Ending) => {
    if (finished) return;
    finished = true;
    clearInterval(ticker);
    opts.clientSignal?.removeEventListener("abort", onClientAbort);
    opts.onEnd({ ...observer.summarize(), ended, ...(firstByteAt !== undefined ? { firstByteAt } : {}) });
  };
  const onClientAbort = () => {
    upstream.abort("client");
    finish("client_abort");
  };
  opts.clientSignal?.addEventListener("abort", onClientAbort, { once: true });
  // A client that left before the relay started never fires the event: end the relay right away.
  if (opts.clientSignal?.aborted) queueMicrotask(onClientAbort);

  // One timer per stream: enforces the idle timeout, and renews leases only while the client is still
  // pulling — a client that silently vanished stops pulling, so its leases lapse on their own.
  const ticker = setInterval(() => {
    const now = Date.now();
    if (reading && now - lastActivity >= opts.idleTimeoutMs) {
      upstream.abort("timeout");
      return;
    }
    const clientLive = reading || now - lastPull < opts.renewEveryMs;
    if (clientLive && now - lastRenew >= opts.renewEveryMs) {
      lastRenew = now;
      opts.renew();
    }
  }, TICK_MS);

  if (!body) {
    clearInterval(ticker);
    const empty = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(inBandError(Codes.network, "upstream sent an empty stream", true));
        c.close();
      },
    });
    finish("upstream_break");
    return empty;
  }
  const reader = body.getReader();

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        reading = true;
        lastPull = Date.now();
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch {
          reading = false;
          const why = upstream.abortReason();
          if (why === "client") {
            finish("client_abort");
            controller.close();
            return;
          }
          const timedOut = why === "timeout";
          controller.enqueue(
            inBandError(
              Codes.network,
              timedOut
                ? `upstream sent nothing for ${opts.idleTimeoutMs} ms; the answer is incomplete`
                : "upstream connection broke mid-stream; the answer is incomplete",
              observer.atBoundary,
            ),
          );
          controller.close();
          finish(timedOut ? "timeout" : "upstream_break");
          return;
        }
        reading = false;
        lastActivity = Date.now();
        if (!result.done) {
          firstByteAt ??= lastActivity;
          observer.observe(result.value);
          controller.enqueue(result.value);
          return;
        }
        const summary = observer.summarize();
        if (summary.error) {
          finish("upstream_error");
        } else if (summary.finishReason) {
          finish("completed");
        } else {
          controller.enqueue(
            inBandError(Codes.network, "upstream ended the stream before it finished; the answer is incomplete", summary.atBoundary),
          );
          finish("upstream_break");
        }
        controller.close();
      },
      cancel() {
        // The client went away: stop upstream generation (and billing) now.
        upstream.abort("client");
        reader.cancel().catch(() => undefined);
        finish("client_abort");
      },
    },
    { highWaterMark: 0 },
  );
}
