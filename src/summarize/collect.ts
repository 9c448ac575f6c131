// Reads a GLM SSE answer to its end and keeps what a summary step needs: the text, the finish reason, the
// usage, or an in-band error. The steps whose answer the client does not see stream too, for two reasons:
// the time limit is then a limit on silence (the relay's idle timeout between chunks), never on a long
// answer that keeps coming; and a streamed call stops waiting for response headers at once, so it does not
// hold one of the Worker's six "waiting for headers" connections for the whole generation.
// It reads the pipeline's relayed body: how the call ended (and its usage) comes from the call's outcome.
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

/** Reads a relayed SSE body to its end. A read that fails (the call was torn down) ends it early. */
export async function collectSse(body: ReadableStream<Uint8Array>): Promise<Collected> {
  const out: Collected = { content: "", events: 0 };
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parts: string[] = [];
  let buf = "";
  const take = (event: string) => {
    const data = event
      .split("\n")
      .map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l))
      .filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).trimStart())
      .join("\n");
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
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let end = buf.indexOf("\n\n");
      while (end !== -1) {
        take(buf.slice(0, end));
        buf = buf.slice(end + 2);
        end = buf.indexOf("\n\n");
      }
    }
  } catch {
    // The outcome says why (timeout, break, abort); what arrived is kept.
  }
  take(buf + decoder.decode());
  out.content = parts.join("");
  return out;
}
