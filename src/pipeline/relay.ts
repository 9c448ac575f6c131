// Relay phase of a streamed call: GLM's SSE body goes to the client byte for byte. The runtime pipes the
// upstream body into a sink whose only per-chunk work is to note the time, hand the chunk to the observer
// (which counts events and keeps a bounded tail for the final usage) and write it into a native
// IdentityTransformStream whose readable side is the response body — so the runtime, not JavaScript, feeds
// the client. A write into it completes when the client has taken the chunk, so the next chunk is read from
// upstream only then: a slow client slows the upstream read and nothing piles up in memory. Bytes are added
// in one case only: when the stream cannot finish, an in-band `data: {"error":…}` event ends it, so a
// client never mistakes a truncated answer for a complete one (and never sees a fake [DONE]).
//
// A write still waiting is a client not reading; no write waiting is the gateway waiting for upstream. So
// one timer per stream tells the two apart: upstream silence longer than idleTimeoutMs is a timeout; a
// client that has not taken a chunk for stallMs is cut off (its slots would lapse otherwise). The leases
// are renewed while the stream lives, and a lost lease ends it.
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
  const toClient = new IdentityTransformStream();
  const writer = toClient.writable.getWriter();
  let finished = false;
  let firstByteAt: number | undefined;
  let lastChunkAt = Date.now();
  let lastRenewAt = Date.now();
  /** Since when the chunk being written has waited for the client; undefined while nothing waits. */
  let writingSince: number | undefined;
  let gatewayEnd: GatewayEnd | undefined;
  let clientGone = false;
  /** Set when the call is cut while a write waits: the upstream call is aborted once the pipe lets go. */
  let abortWhenPiped: AbortWhy | undefined;

  const finish = (ended: Ending) => {
    if (finished) return;
    finished = true;
    clearInterval(ticker);
    opts.clientSignal?.removeEventListener("abort", onClientAbort);
    opts.onEnd({ ...observer.summarize(), ended, ...(firstByteAt !== undefined ? { firstByteAt } : {}) });
  };
  /**
   * Stops the upstream call. A write waiting for the client holds the pipe: the client's side is failed
   * first, so the pipe cancels the upstream body itself, and the call is aborted once the pipe has let go
   * (aborting the body under a pipe that is about to cancel it leaves a rejection nobody handles).
   */
  const cut = (why: AbortWhy, err: Error) => {
    if (writingSince !== undefined) {
      abortWhenPiped ??= why;
      writer.abort(err).catch(() => undefined);
    } else {
      upstream.abort(why);
    }
  };
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
    if (writingSince === undefined) {
      // The client has everything sent so far: only upstream's silence counts.
      if (now - lastChunkAt >= opts.idleTimeoutMs) endByGateway("timeout");
    } else if (now - writingSince >= opts.stallMs) {
      endByGateway("client_stalled");
    }
    if (now - lastRenewAt >= opts.renewEveryMs) {
      lastRenewAt = now;
      void opts.renew().then((held) => {
        if (!held && !finished) endByGateway("slot_lost");
      });
    }
  }, opts.tickMs ?? 1_000);

  const delivered = () => {
    writingSince = undefined;
    lastChunkAt = Date.now();
  };
  const sink = new WritableStream<Uint8Array>({
    write(chunk) {
      const now = Date.now();
      firstByteAt ??= now;
      observer.observe(chunk);
      writingSince = now;
      return writer.write(chunk).then(delivered);
    },
  });

  opts.clientSignal?.addEventListener("abort", onClientAbort, { once: true });
  if (opts.clientSignal?.aborted) onClientAbort();

  /** Writes the stream's last bytes (if any), past the observer, and closes it; false when the client has gone. */
  const close = async (last: Uint8Array | undefined): Promise<boolean> => {
    try {
      if (last) {
        writingSince = Date.now();
        await writer.write(last);
        delivered();
      }
      await writer.close();
      return true;
    } catch {
      return false;
    }
  };
  /** The client's side is over and the call is not: end the client's side, stop the call. */
  const abandon = () => {
    writer.abort(new Error("client closed the request")).catch(() => undefined);
    upstream.abort("client");
  };

  const source = upstream.response.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  const piped = source.pipeTo(sink, { preventClose: true });
  piped.finally(() => abortWhenPiped && upstream.abort(abortWhenPiped)).catch(() => undefined);
  piped.then(
    async () => {
      // Upstream ended its body: complete, an in-band error of GLM's own, or cut short.
      const summary = observer.summarize();
      const ended: Ending = summary.error ? "upstream_error" : summary.finishReason ? "completed" : "upstream_break";
      const last =
        ended === "upstream_break"
          ? inBandError(Codes.network, MESSAGES.unfinished(opts), summary.atBoundary)
          : undefined;
      const sent = await close(last);
      finish(sent ? ended : (gatewayEnd ?? "client_abort"));
    },
    async () => {
      writingSince = undefined;
      const why = gatewayEnd ?? (upstream.abortReason() === "timeout" ? "timeout" : undefined);
      if (why === "client_stalled") return finish("client_stalled");
      if ((clientGone || upstream.abortReason() === "client") && why === undefined) {
        abandon();
        return finish("client_abort");
      }
      const message = why ? MESSAGES[why](opts) : MESSAGES.upstream_break(opts);
      const sent = await close(inBandError(Codes.network, message, observer.atBoundary));
      // A failed write means the client is gone: the upstream failure is moot, stop generating.
      if (!sent) abandon();
      finish(sent ? (why ?? "upstream_break") : "client_abort");
    },
  );
  return toClient.readable;
}
