// Relay phase of a streamed call: GLM's SSE body goes to the client byte for byte, piped by the runtime
// through one TransformStream whose only per-chunk work is to note the time and hand the chunk to the
// observer (which counts events and keeps a bounded tail for the final usage). Bytes are added in one case
// only: when the stream cannot finish, an in-band `data: {"error":…}` event ends it, so a client never
// mistakes a truncated answer for a complete one (and never sees a fake [DONE]).
//
// One timer per stream tells upstream silence from a client that stopped reading: the readable side's
// queue is full only while the client is not reading. Upstream silence longer than idleTimeoutMs is a
// timeout; a client that has not read for stallMs is cut off (its slots would lapse otherwise); the
// leases are renewed while the stream lives, and a lost lease ends it.
import { Codes } from "../errors.ts";
import type { UpstreamResponse } from "../upstream/client.ts";
import { SseObserver, type StreamSummary } from "../upstream/sse-observer.ts";
import type { Ending } from "../usage/ledger.ts";

export interface RelayOutcome extends StreamSummary {
  ended: Ending;
  /** Date.now() when the first upstream chunk arrived, if one did. */
  firstByteAt?: number;
}

export interface RelayOptions {
  /** Longest silence from upstream, while the client is reading, before the gateway gives up. */
  idleTimeoutMs: number;
  /** Longest time the client may go without reading before the stream is ended (and its slots freed). */
  stallMs: number;
  /** How often to renew the request's leases. */
  renewEveryMs: number;
  /** Renews the leases; resolves false when they are lost for good: the stream then ends. */
  renew: () => Promise<boolean>;
  /** Called exactly once, however the stream ends. */
  onEnd: (outcome: RelayOutcome) => void;
  /** The client's request signal: a disconnect the runtime reports ends the relay at once. */
  clientSignal?: AbortSignal | null;
  /** Timer period (tests shorten it). */
  tickMs?: number;
}

const encoder = new TextEncoder();

export function inBandError(code: string, message: string, atBoundary: boolean): Uint8Array {
  const event = `data: ${JSON.stringify({ error: { code, message } })}\n\n`;
  return encoder.encode(atBoundary ? event : `\n\n${event}`);
}

/** Why the gateway itself ended a stream (set before it aborts the upstream call). */
type GatewayEnd = "timeout" | "client_stalled" | "slot_lost";

const MESSAGES: Record<GatewayEnd | "upstream_break" | "unfinished", (o: RelayOptions) => string> = {
  timeout: (o) => `upstream sent nothing for ${o.idleTimeoutMs} ms; the answer is incomplete`,
  client_stalled: () => "the client stopped reading; the answer is incomplete",
  slot_lost: () => "the request lost its concurrency slot and could not retake it; the answer is incomplete",
  upstream_break: () => "upstream connection broke mid-stream; the answer is incomplete",
  unfinished: () => "upstream ended the stream before it finished; the answer is incomplete",
};

export function relaySse(upstream: UpstreamResponse, opts: RelayOptions): ReadableStream<Uint8Array> {
  const observer = new SseObserver();
  const body = upstream.response.body;
  let finished = false;
  let firstByteAt: number | undefined;
  let lastChunkAt = Date.now();
  let lastRenewAt = Date.now();
  let stalledSince: number | undefined;
  let gatewayEnd: GatewayEnd | undefined;
  let ctrl!: TransformStreamDefaultController<Uint8Array>;

  const finish = (ended: Ending) => {
    if (finished) return;
    finished = true;
    clearInterval(ticker);
    opts.clientSignal?.removeEventListener("abort", onClientAbort);
    opts.onEnd({ ...observer.summarize(), ended, ...(firstByteAt !== undefined ? { firstByteAt } : {}) });
  };
  const onClientAbort = () => upstream.abort("client");
  const endByGateway = (why: GatewayEnd) => {
    gatewayEnd ??= why;
    upstream.abort(why === "timeout" ? "timeout" : "gateway");
  };

  const ticker = setInterval(() => {
    const now = Date.now();
    // The queue toward the client is full: the client is not reading. Its pause is not upstream silence.
    if ((ctrl.desiredSize ?? 1) <= 0) {
      stalledSince ??= now;
      lastChunkAt = now;
      if (now - stalledSince >= opts.stallMs) {
        endByGateway("client_stalled");
        ctrl.error(new Error("client stopped reading"));
      }
    } else {
      stalledSince = undefined;
      if (now - lastChunkAt >= opts.idleTimeoutMs) endByGateway("timeout");
    }
    if (now - lastRenewAt >= opts.renewEveryMs) {
      lastRenewAt = now;
      void opts.renew().then((held) => {
        if (!held && !finished) endByGateway("slot_lost");
      });
    }
  }, opts.tickMs ?? 1_000);

  const relay = new TransformStream<Uint8Array, Uint8Array>(
    {
      start(c) {
        ctrl = c;
      },
      transform(chunk, c) {
        lastChunkAt = Date.now();
        firstByteAt ??= lastChunkAt;
        observer.observe(chunk);
        c.enqueue(chunk);
      },
    },
    undefined,
    // One chunk may wait for the client; more means it stopped reading (and the pipe stops pulling upstream).
    { highWaterMark: 1 },
  );

  opts.clientSignal?.addEventListener("abort", onClientAbort, { once: true });
  if (opts.clientSignal?.aborted) upstream.abort("client");

  /** Adds the stream's last bytes (if any), past the observer, and closes it; false when the client has gone. */
  const close = (last: Uint8Array | undefined): boolean => {
    try {
      if (last) ctrl.enqueue(last);
      ctrl.terminate();
      return true;
    } catch {
      return false;
    }
  };

  const source = body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  source.pipeTo(relay.writable, { preventClose: true, preventAbort: true }).then(
    () => {
      // Upstream ended its body: complete, an in-band error of GLM's own, or cut short.
      const summary = observer.summarize();
      if (summary.error) return finish(close(undefined) ? "upstream_error" : "client_abort");
      if (summary.finishReason) return finish(close(undefined) ? "completed" : "client_abort");
      const sent = close(inBandError(Codes.network, MESSAGES.unfinished(opts), summary.atBoundary));
      finish(sent ? "upstream_break" : "client_abort");
    },
    () => {
      const why = gatewayEnd ?? (upstream.abortReason() === "timeout" ? "timeout" : undefined);
      if (why === "client_stalled") return finish("client_stalled");
      if (upstream.abortReason() === "client" && why === undefined) return finish("client_abort");
      const message = why ? MESSAGES[why](opts) : MESSAGES.upstream_break(opts);
      const sent = close(inBandError(Codes.network, message, observer.atBoundary));
      // A failed write means the client is gone: the upstream failure is moot, stop generating.
      if (!sent) upstream.abort("client");
      finish(sent ? (why ?? "upstream_break") : "client_abort");
    },
  );
  return relay.readable;
}
