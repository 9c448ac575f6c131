// Builds an async chat job's result — the body of a chat completion ({choices, usage, web_search}) — from
// GLM's SSE stream. Jobs stream internally so that the upstream timeout bounds GLM's silences, never the
// length of an answer; the client still gets the non-streaming shape.
import type { GlmUsage } from "../upstream/sse-observer.ts";

interface ToolCall {
  index?: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: string };
  [field: string]: unknown;
}

interface Delta {
  role?: string;
  content?: string | null;
  reasoning_content?: string | null;
  tool_calls?: ToolCall[];
}

interface Chunk {
  error?: { code?: unknown; message?: unknown };
  usage?: GlmUsage;
  web_search?: unknown;
  choices?: { index?: number; finish_reason?: string | null; delta?: Delta }[];
}

interface ChoiceParts {
  content: string[];
  reasoning: string[];
  tools: Map<number, ToolCall>;
  finishReason: string | null;
}

export interface CollectedChat {
  choices: Record<string, unknown>[];
  usage?: GlmUsage;
  webSearch?: unknown;
  /** An in-band error event (GLM's, or the relay's when the stream could not finish). */
  error?: { code: string; message: string };
  /** The last choice's finish reason (what a job reports when it checks the ending). */
  finishReason?: string;
}

/** Adds one delta's tool calls: a call is opened by its first fragment, later fragments extend its arguments. */
function mergeTools(into: Map<number, ToolCall>, calls: ToolCall[]): void {
  calls.forEach((call, position) => {
    const index = typeof call.index === "number" ? call.index : position;
    const known = into.get(index);
    if (!known) {
      into.set(index, { ...call, ...(call.function ? { function: { ...call.function } } : {}) });
      return;
    }
    if (call.id) known.id = call.id;
    if (call.type) known.type = call.type;
    if (call.function) {
      const f = (known.function ??= {});
      if (call.function.name) f.name = call.function.name;
      if (call.function.arguments) f.arguments = (f.arguments ?? "") + call.function.arguments;
    }
  });
}

/** Reads a relayed SSE body to its end. A read that fails (the call was torn down) ends it early. */
export async function collectChat(body: ReadableStream<Uint8Array>): Promise<CollectedChat> {
  const parts = new Map<number, ChoiceParts>();
  const out: Omit<CollectedChat, "choices"> = {};
  const take = (event: string) => {
    const data = event
      .split("\n")
      .map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l))
      .filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).trimStart())
      .join("\n");
    if (data === "" || data === "[DONE]") return;
    let chunk: Chunk;
    try {
      chunk = JSON.parse(data) as Chunk;
    } catch {
      return;
    }
    if (chunk.error) out.error = { code: String(chunk.error.code ?? ""), message: String(chunk.error.message ?? "") };
    if (chunk.usage) out.usage = chunk.usage;
    if (chunk.web_search !== undefined) out.webSearch = chunk.web_search;
    for (const c of chunk.choices ?? []) {
      const index = typeof c.index === "number" ? c.index : 0;
      let p = parts.get(index);
      if (!p) parts.set(index, (p = { content: [], reasoning: [], tools: new Map(), finishReason: null }));
      if (typeof c.delta?.content === "string") p.content.push(c.delta.content);
      if (typeof c.delta?.reasoning_content === "string") p.reasoning.push(c.delta.reasoning_content);
      if (Array.isArray(c.delta?.tool_calls)) mergeTools(p.tools, c.delta.tool_calls);
      if (c.finish_reason) {
        p.finishReason = c.finish_reason;
        out.finishReason = c.finish_reason;
      }
    }
  };
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
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
    // The outcome says why the stream ended early; what arrived is kept.
  }
  take(buf + decoder.decode());
  const choices = [...parts.entries()]
    .sort(([a], [b]) => a - b)
    .map(([index, p]) => {
      const tools = [...p.tools.entries()].sort(([a], [b]) => a - b).map(([, t]) => t);
      const content = p.content.join("");
      const message: Record<string, unknown> = {
        role: "assistant",
        content: tools.length > 0 && content === "" ? null : content,
      };
      if (p.reasoning.length > 0) message["reasoning_content"] = p.reasoning.join("");
      if (tools.length > 0) message["tool_calls"] = tools;
      return { index, finish_reason: p.finishReason, message };
    });
  return { choices, ...out };
}
