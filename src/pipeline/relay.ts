// Relay phase of a streamed call: GLM's SSE body goes to the client byte for byte. The runtime pipes the
// upstream body into a sink whose only per-chunk work is to note the time, hand the chunk to the observer
// (which counts events and keeps a bounded tail for the final usage) and pass it on; the next chunk is
// taken from upstream only when the client asks for more, so a slow client slows the upstream read and
// nothing piles up in memory. Bytes are added in one case only: when the stream cannot finish, an in-band
// `data: {"error":…}` event ends it, so a client never mistakes a truncated answer for a complete one (and
// never sees a fake [DONE]).
//
// Because the client's demand is visible (it asked and got nothing yet, or it has not asked since the
// last chunk), one timer per stream tells upstream silence from a client that stopped reading: upstream
// silence longer than idleTimeoutMs is a timeout; a client that has not asked for stallMs is cut off (its
// slots would lapse otherwise). The leases are renewed while the stream lives, and a lost lease ends it.
import { Codes } from "../errors.ts";
import type { AbortWhy, UpstreamResponse } from "../upstream/client.ts";
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
  let finished = false;
  let firstByteAt: number | undefined;
  let lastChunkAt = Date.now();
  let lastRenewAt = Date.now();
  /** The client has asked for data and has not been given any since. */
  let demand = false;
  /** Since when the client has not asked (while it has data or the stream is between chunks). */
  let quietSince = Date.now();
  let gatewayEnd: GatewayEnd | undefined;
  let ctrl!: ReadableStreamDefaultController<Uint8Array>;
  /** The pipe's pending write, waiting for the client to ask for more. */
  let resume: { go: () => void; stop: (err: unknown) => void } | undefined;

  const finish = (ended: Ending) => {
    if (finished) return;
    finished = true;
    clearInterval(ticker);
    opts.clientSignal?.removeEventListener("abort", onClientAbort);
    opts.onEnd({ ...observer.summarize(), ended, ...(firstByteAt !== undefined ? { firstByteAt } : {}) });
  };
  /**
   * Stops the upstream call. A write waiting for the client holds the pipe: it is failed first, so the pipe
   * cancels the upstream body itself, and the call is aborted once the pipe has let go (aborting the body
   * under a pipe that is about to cancel it leaves a rejection nobody handles).
   */
  let abortWhenPiped: AbortWhy | undefined;
  const cut = (why: AbortWhy, err: Error) => {
    const r = resume;
    resume = undefined;
    if (r) {
      abortWhenPiped ??= why;
      r.stop(err);
    } else {
      upstream.abort(why);
    }
  };
  let clientGone = false;
  const onClientAbort = () => {
    clientGone = true;
    cut("client", new Error("client closed the request"));
  };
  const endByGateway = (why: GatewayEnd) => {
    gatewayEnd ??= why;
    cut(why === "timeout" ? "timeout" : "gateway", new Error(why));
  };

  const ticker = setInterval(() => {
    const now = Date.now();
    if (demand) {
      // The client is waiting: only upstream's silence counts.
      if (now - lastChunkAt >= opts.idleTimeoutMs) endByGateway("timeout");
    } else if (now - quietSince >= opts.stallMs) {
      endByGateway("client_stalled");
      try {
        ctrl.error(new Error("the client stopped reading"));
      } catch {
        // already closed
      }
    }
    if (now - lastRenewAt >= opts.renewEveryMs) {
      lastRenewAt = now;
      void opts.renew().then((held) => {
        if (!held && !finished) endByGateway("slot_lost");
      });
    }
  }, opts.tickMs ?? 1_000);

  const readable = new ReadableStream<Uint8Array>(
    {
      start(c) {
        ctrl = c;
      },
      pull() {
        demand = true;
        const r = resume;
        resume = undefined;
        r?.go();
      },
      cancel() {
        // The client went away: stop upstream generation (and billing) now.
        onClientAbort();
      },
    },
    { highWaterMark: 0 },
  );

  const sink = new WritableStream<Uint8Array>({
    write(chunk) {
      lastChunkAt = Date.now();
      firstByteAt ??= lastChunkAt;
      observer.observe(chunk);
      demand = false;
      quietSince = lastChunkAt;
      ctrl.enqueue(chunk);
      // The next chunk is taken from upstream once the client asks (it may have already, within enqueue).
      if (demand) return;
      return new Promise<void>((go, stop) => (resume = { go, stop }));
    },
  });

  opts.clientSignal?.addEventListener("abort", onClientAbort, { once: true });
  if (opts.clientSignal?.aborted) onClientAbort();

  /** Adds the stream's last bytes (if any), past the observer, and closes it; false when the client has gone. */
  const close = (last: Uint8Array | undefined): boolean => {
    try {
      if (last) ctrl.enqueue(last);
      ctrl.close();
      return true;
    } catch {
      return false;
    }
  };

  const source = upstream.response.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  const piped = source.pipeTo(sink, { preventClose: true });
  piped.finally(() => abortWhenPiped && upstream.abort(abortWhenPiped)).catch(() => undefined);
  piped.then(
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
      if ((clientGone || upstream.abortReason() === "client") && why === undefined) {
        // The client is gone (or going): end its side too, so nothing waits on a stream that will not close.
        try {
          ctrl.error(new Error("client closed the request"));
        } catch {
          // already errored
        }
        return finish("client_abort");
      }
      const message = why ? MESSAGES[why](opts) : MESSAGES.upstream_break(opts);
      const sent = close(inBandError(Codes.network, message, observer.atBoundary));
      // A failed write means the client is gone: the upstream failure is moot, stop generating.
      if (!sent) cut("client", new Error("client closed the request"));
      finish(sent ? (why ?? "upstream_break") : "client_abort");
    },
  );
  return readable;
}
