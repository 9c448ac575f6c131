// Reads a GLM SSE answer to its end and keeps what a summary step needs: the text, the finish reason, the
// usage, or an in-band error. The steps whose answer the client does not see stream too, for two reasons:
// the time limit is then a limit on silence (the relay's idle timeout between chunks), never on a long
// answer that keeps coming; and a streamed call stops waiting for response headers at once, so it does not
// hold one of the Worker's six "waiting for headers" connections for the whole generation.
// It reads the pipeline's relayed body: how the call ended (and its usage) comes from the call's outcome.
import { createParser } from "eventsource-parser";
import type { GlmUsage } from "../upstream/sse-observer.ts";

export interface Collected {
  content: string;
  finishReason?: string;
  usage?: GlmUsage;
  error?: { code: string; message: string };
  /** Events received (a stand-in for completion tokens when usage is missing). */
  events: number;
}

interface Chunk {
  error?: { code?: unknown; message?: unknown };
  usage?: GlmUsage;
  choices?: { finish_reason?: string; delta?: { content?: string | null } }[];
}

/** The final event can be large (web_search results, tool-call arguments); nothing legitimate is larger. */
const MAX_EVENT_CHARS = 4 * 1024 * 1024;

/** Reads a relayed SSE body to its end. A read that fails (the call was torn down) ends it early. */
export async function collectSse(body: ReadableStream<Uint8Array>): Promise<Collected> {
  const out: Collected = { content: "", events: 0 };
  const parts: string[] = [];
  const take = (data: string) => {
    if (data === "" || data === "[DONE]") return;
    out.events++;
    let chunk: Chunk;
    try {
      chunk = JSON.parse(data) as Chunk;
    } catch {
      return; // not JSON: nothing a summary can use
    }
    if (chunk.error) out.error = { code: String(chunk.error.code ?? ""), message: String(chunk.error.message ?? "") };
    if (chunk.usage) out.usage = chunk.usage;
    const choice = chunk.choices?.[0];
    if (typeof choice?.delta?.content === "string") parts.push(choice.delta.content);
    if (choice?.finish_reason) out.finishReason = choice.finish_reason;
  };
  // SSE framing (LF, CRLF or CR line ends, multi-line data fields) is the parser's job, not ours.
  const parser = createParser({ onEvent: (e) => take(e.data), maxBufferSize: MAX_EVENT_CHARS });
  const reader = body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
    }
    parser.feed(decoder.decode());
    // A last event without its blank line still counts (GLM's streams end with one; a cut one may not).
    parser.reset({ consume: true });
  } catch {
    // The outcome says why (timeout, break, abort); what arrived is kept.
    reader.cancel().catch(() => undefined);
  }
  out.content = parts.join("");
  return out;
}
