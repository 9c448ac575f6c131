// The upstream's byte formats for a planned answer: the sync JSON body and the SSE event sequence,
// with GLM-4's quirks (role in every chunk, no finish_reason key until the last chunk, usage on the
// last chunk, no `object`) and the same key order as the official verbatim example.

import type { Ended } from "./stats.ts";
import type { Plan } from "./plan.ts";

const utf8 = new TextEncoder();

/** Resolves after `ms` (never, for Infinity) and rejects as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    // setTimeout(Infinity) would fire at once, so "forever" simply never sets a timer.
    const timer =
      ms === Infinity
        ? undefined
        : setTimeout(
            () => {
              signal.removeEventListener("abort", onAbort);
              resolve();
            },
            Math.max(0, ms),
          );
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function message(plan: Plan) {
  return plan.toolCalls
    ? { role: "assistant", content: null, tool_calls: plan.toolCalls }
    : { role: "assistant", content: plan.tokens.join("") };
}

export function completionBody(plan: Plan) {
  const { id, created, model, request_id, usage, webSearch } = plan;
  return {
    id,
    created,
    model,
    request_id,
    choices: [{ index: 0, finish_reason: plan.finish, message: message(plan) }],
    usage,
    ...(webSearch ? { web_search: webSearch } : {}),
  };
}

const event = (data: unknown): string => `data: ${JSON.stringify(data)}\n\n`;

function contentEvent(plan: Plan, content: string): string {
  const { id, created, model } = plan;
  return event({ id, created, model, choices: [{ index: 0, delta: { role: "assistant", content } }] });
}

function finalEvent(plan: Plan): string {
  const { id, created, model, usage, webSearch } = plan;
  const delta = plan.toolCalls ? { role: "assistant", tool_calls: plan.toolCalls } : { role: "assistant", content: "" };
  return event({
    id,
    created,
    model,
    choices: [{ index: 0, finish_reason: plan.finish, delta }],
    usage,
    ...(webSearch ? { web_search: webSearch } : {}),
  });
}

export type StreamFault =
  { kind: "break" | "hang"; after: number } | { kind: "error"; after: number; code: string; message: string };

export type StreamHooks = {
  chunk(): void; // a content chunk was handed to the client
  hanging(): void;
  delivered(): void; // the final chunk (with usage) was handed to the client
  end(ended: Ended): void;
};

/** Thrown to make the body stream error, which the server turns into an abrupt connection reset. */
export class SimBreak extends Error {}

/**
 * The SSE events of one streamed answer, paced by ttft/delay. A generator is pulled one event at a
 * time, so code after a `yield` runs only once the client has taken that event.
 */
export async function* sseEvents(
  plan: Plan,
  ttft: number,
  delay: number,
  fault: StreamFault | undefined,
  signal: AbortSignal,
  hooks: StreamHooks,
): AsyncGenerator<string> {
  await sleep(ttft, signal);
  const n = plan.tokens.length;
  const faultAt = fault ? Math.min(fault.after, n) : -1; // a fault always fires, at the latest before the end
  for (let i = 0; i <= n; i++) {
    if (i === faultAt && fault) {
      if (fault.kind === "break") {
        hooks.end("break");
        throw new SimBreak("simulated connection reset");
      }
      if (fault.kind === "hang") {
        hooks.hanging();
        await sleep(Infinity, signal); // until the client gives up
      }
      if (fault.kind === "error") {
        hooks.end("error");
        yield event({ error: { code: fault.code, message: fault.message } });
        return;
      }
    }
    if (i > 0) await sleep(delay, signal);
    if (i === n) break;
    yield contentEvent(plan, plan.tokens[i]!);
    hooks.chunk();
  }
  yield finalEvent(plan);
  hooks.delivered();
  yield "data: [DONE]\n\n";
  hooks.end("completed");
}

/**
 * A pull-driven byte stream over the events: nothing is produced before the consumer asks, so each
 * event becomes its own write and a cancelled body stops the generator mid-sleep.
 */
export function eventStream(
  events: AsyncGenerator<string>,
  abort: AbortController,
  onError: (err: unknown) => void,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const next = await events.next();
          if (next.done) controller.close();
          else controller.enqueue(utf8.encode(next.value));
        } catch (err) {
          if (abort.signal.aborted) return; // the client left; nobody reads any more
          onError(err);
          controller.error(err);
        }
      },
      cancel() {
        abort.abort();
      },
    },
    { highWaterMark: 0 },
  );
}
