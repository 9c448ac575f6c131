// The streamed answer of a summary: progress chunks while pieces are summarized, then the final upstream
// stream relayed byte for byte (src/pipeline/relay.ts: an in-band error if it breaks), then one closing chunk with the
// usage and cost of the whole summary, then `data: [DONE]`.
//
// Progress chunks are chat-completion chunks with `choices: []` and a top-level `progress` field: the shape
// of OpenAI's usage-only chunk, which OpenAI-style parsers already accept. A failure is a final
// `data: {"error":…}` event with no [DONE], so no client takes a partial summary for a complete one.
// The body is pull-driven: nothing is read from upstream faster than the client reads.
import { Codes } from "../errors.ts";
import type { Outcome } from "../pipeline/index.ts";
import type { OpenStream } from "./calls.ts";

export type Stage = "map" | "combine" | "final" | "done";

export interface Progress {
  done: number;
  total: number;
  stage: Stage;
}

/** Where the orchestrator sends progress and the final step; the non-streaming sink ignores both. */
export interface Sink {
  readonly streaming: boolean;
  progress(p: Progress): void;
  /** Streams the final step to the client; resolves when that stream has ended, however it ended. */
  final(open: OpenStream): Promise<Outcome>;
}

export const quietSink: Sink = {
  streaming: false,
  progress: () => undefined,
  final: () => Promise.reject(new Error("the non-streaming sink has no final stream")),
};

/** A comment line (ignored by SSE parsers) after this much silence keeps proxies from closing the stream. */
export const KEEPALIVE_MS = 15_000;

const encoder = new TextEncoder();
const DONE = encoder.encode("data: [DONE]");
const LF = 10;

export interface SseSinkOptions {
  id: string;
  model: string;
  /** The client went away (the body was cancelled). */
  onCancel: () => void;
  /** Fields of the last chunk before [DONE] (usage and cost of the whole summary), or an error to end with. */
  closing: (outcome: Outcome) => { fields: Record<string, unknown> } | { error: { code: string; message: string } };
  keepAliveMs?: number;
}

function sse(data: unknown): Uint8Array {
  return encoder.encode(`data: ${JSON.stringify(data)}\n\n`);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.byteLength === 0) return b;
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

/** Index of `data: [DONE]` at the start of a line in `buf`, or -1. */
function findDone(buf: Uint8Array): number {
  for (let i = buf.indexOf(DONE[0]!); i !== -1; i = buf.indexOf(DONE[0]!, i + 1)) {
    if (i > 0 && buf[i - 1] !== LF) continue;
    let k = 0;
    while (k < DONE.length && i + k < buf.length && buf[i + k] === DONE[k]) k++;
    if (k === DONE.length) return i;
  }
  return -1;
}

/** Length of the longest tail of `buf` that starts a line and could still grow into `data: [DONE]`. */
function pendingTail(buf: Uint8Array): number {
  for (let len = Math.min(DONE.length - 1, buf.length); len > 0; len--) {
    const i = buf.length - len;
    if (i > 0 && buf[i - 1] !== LF) continue;
    let k = 0;
    while (k < len && buf[i + k] === DONE[k]) k++;
    if (k === len) return len;
  }
  return 0;
}

export class SseSink implements Sink {
  readonly streaming = true;
  readonly readable: ReadableStream<Uint8Array>;
  /** Called once, when the first byte is ready: the moment the response can be returned. */
  onOpen: () => void = () => undefined;
  private opened = false;
  private readonly queue: Uint8Array[] = [];
  private reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  private final_: OpenStream | undefined;
  private ended = false;
  private cancelled = false;
  private wake: (() => void) | undefined;
  private held: Uint8Array = new Uint8Array(0);
  private sawDone = false;
  private readonly created = Math.floor(Date.now() / 1000);

  constructor(private readonly o: SseSinkOptions) {
    this.readable = new ReadableStream<Uint8Array>(
      {
        pull: (controller) => this.pull(controller),
        cancel: () => this.cancel(),
      },
      { highWaterMark: 0 },
    );
  }

  get isOpen(): boolean {
    return this.opened;
  }

  progress(p: Progress): void {
    this.push(sse({ id: this.o.id, created: this.created, model: this.o.model, choices: [], progress: p }));
  }

  /** Ends the stream with an in-band error (no [DONE]). */
  fail(code: string, message: string): void {
    if (this.ended) return;
    this.push(sse({ error: { code, message } }));
    this.ended = true;
    this.poke();
  }

  final(open: OpenStream): Promise<Outcome> {
    if (this.cancelled) {
      // The client left before the final step began: stop it at once (the pipeline records it as an abort).
      open.body.cancel().catch(() => undefined);
      return open.outcome;
    }
    this.final_ = open;
    this.reader = open.body.getReader();
    this.open();
    this.poke();
    return open.outcome;
  }

  private open(): void {
    if (this.opened) return;
    this.opened = true;
    this.onOpen();
  }

  private push(bytes: Uint8Array): void {
    if (this.ended) return;
    this.queue.push(bytes);
    this.open();
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    for (;;) {
      if (this.cancelled) return;
      const next = this.queue.shift();
      if (next) return controller.enqueue(next);
      if (this.reader) {
        if (await this.pump(controller)) return;
        continue;
      }
      if (this.ended) return controller.close();
      const timedOut = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(true), this.o.keepAliveMs ?? KEEPALIVE_MS);
        this.wake = () => {
          clearTimeout(t);
          resolve(false);
        };
      });
      if (timedOut) return controller.enqueue(encoder.encode(": keep-alive\n\n"));
    }
  }

  /** Moves one upstream chunk through, holding back `data: [DONE]` until the closing chunk is written. */
  private async pump(controller: ReadableStreamDefaultController<Uint8Array>): Promise<boolean> {
    const r = await this.reader!.read();
    if (this.cancelled) return true;
    if (!r.done) {
      if (this.sawDone) return false; // nothing follows [DONE]
      const buf = concat(this.held, r.value);
      const at = findDone(buf);
      let out: Uint8Array;
      if (at !== -1) {
        this.sawDone = true;
        this.held = new Uint8Array(0);
        out = buf.subarray(0, at);
      } else {
        const keep = pendingTail(buf);
        this.held = buf.slice(buf.length - keep);
        out = buf.subarray(0, buf.length - keep);
      }
      if (out.byteLength === 0) return false;
      controller.enqueue(out);
      return true;
    }
    // The relay has ended: the closing chunk waits for the final call's settlement (its usage counts).
    this.reader = undefined;
    this.ended = true;
    const outcome = await this.final_!.outcome;
    if (this.sawDone) {
      const closing = this.o.closing(outcome);
      if ("error" in closing) controller.enqueue(sse({ error: closing.error }));
      else {
        const chunk = { id: this.o.id, created: this.created, model: this.o.model, choices: [], ...closing.fields };
        controller.enqueue(concat(sse(chunk), encoder.encode("data: [DONE]\n\n")));
      }
    } else if (this.held.byteLength > 0) {
      controller.enqueue(this.held);
    }
    controller.close();
    return true;
  }

  private cancel(): void {
    this.cancelled = true;
    this.ended = true;
    this.o.onCancel();
    const reader = this.reader;
    this.reader = undefined;
    reader?.cancel().catch(() => undefined);
    this.poke();
  }
}

/** The in-band error for a final stream that completed upstream but is not a usable summary. */
export function unusableFinish(finishReason: string | undefined): { code: string; message: string } | undefined {
  if (finishReason === "network_error") {
    return {
      code: Codes.network,
      message: 'the upstream failed while writing the summary (finish_reason "network_error"); it is incomplete',
    };
  }
  if (finishReason === "sensitive") {
    return {
      code: "1301",
      message: 'the upstream\'s content filter stopped the summary (finish_reason "sensitive"); it is incomplete',
    };
  }
  return undefined;
}
