// Watches a GLM SSE byte stream without copying it: counts events as they pass and keeps references to
// the last chunks (bounded), so that at the end the final event — which carries finish_reason and usage,
// or an in-band error — can be decoded once. GLM's last chunk holds usage; there is no usage-only chunk.

const LF = 10;
/** The final event can be large (web_search results, tool-call arguments): keep this much of the tail. */
const TAIL_BYTES = 256 * 1024;

export interface GlmUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number };
}

export interface StreamSummary {
  events: number;
  bytes: number;
  done: boolean;
  finishReason?: string;
  usage?: GlmUsage;
  error?: { code: string; message: string };
  /** The bytes sent so far end exactly at an event boundary ("\n\n"). */
  atBoundary: boolean;
}

export class SseObserver {
  events = 0;
  bytes = 0;
  private tail: Uint8Array[] = [];
  private tailBytes = 0;
  private lastByte = -1;
  private secondLastByte = -1;

  observe(chunk: Uint8Array): void {
    const n = chunk.byteLength;
    if (n === 0) return;
    this.bytes += n;
    // Count event ends ("\n\n"), including one split across two chunks.
    if (this.lastByte === LF && chunk[0] === LF) this.events++;
    let i = chunk.indexOf(LF);
    while (i !== -1 && i + 1 < n) {
      if (chunk[i + 1] === LF) {
        this.events++;
        i = chunk.indexOf(LF, i + 2);
      } else {
        i = chunk.indexOf(LF, i + 1);
      }
    }
    this.secondLastByte = n > 1 ? chunk[n - 2]! : this.lastByte;
    this.lastByte = chunk[n - 1]!;
    this.tail.push(chunk);
    this.tailBytes += n;
    while (this.tail.length > 1 && this.tailBytes - this.tail[0]!.byteLength >= TAIL_BYTES) {
      this.tailBytes -= this.tail.shift()!.byteLength;
    }
  }

  get atBoundary(): boolean {
    return this.bytes === 0 || (this.lastByte === LF && this.secondLastByte === LF);
  }

  /** Decodes the tail once, at the end of the stream. */
  summarize(): StreamSummary {
    const out: StreamSummary = { events: this.events, bytes: this.bytes, done: false, atBoundary: this.atBoundary };
    if (this.tail.length === 0) return out;
    const all = new Uint8Array(this.tailBytes);
    let off = 0;
    for (const c of this.tail) {
      all.set(c, off);
      off += c.byteLength;
    }
    const text = new TextDecoder().decode(all);
    const lines = text.split("\n");
    for (let i = lines.length - 1; i >= 0; i--) {
      const line = lines[i]!.trim();
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") {
        out.done = true;
        continue;
      }
      try {
        const ev = JSON.parse(data) as {
          error?: { code?: unknown; message?: unknown };
          usage?: GlmUsage;
          choices?: { finish_reason?: string }[];
        };
        if (ev.error) out.error = { code: String(ev.error.code ?? ""), message: String(ev.error.message ?? "") };
        if (ev.usage) out.usage = ev.usage;
        const fr = ev.choices?.[0]?.finish_reason;
        if (fr) out.finishReason = fr;
      } catch {
        // A partial last line (the stream broke mid-event) is not an event; keep looking.
        continue;
      }
      break;
    }
    return out;
  }
}
