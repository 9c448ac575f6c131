// Server-sent events from a fetch() body, read as they arrive: yields {data} per event and {comment} per
// comment line (": …"). The parsing is eventsource-parser's (vendored by scripts/vendor-assets.ts): LF, CR
// and CRLF line ends, events split across network chunks, multi-line data fields.
import { createParser } from "../vendor/eventsource-parser/index.js";

/** @param {ReadableStream<Uint8Array>} body */
export async function* readSse(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  /** @type {({data: string} | {comment: string})[]} */
  const ready = [];
  const parser = createParser({
    onEvent: (event) => ready.push({ data: event.data }),
    onComment: (comment) => ready.push({ comment: comment.trim() }),
  });
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
      yield* ready.splice(0);
    }
    // A last event without its blank line still counts (the stream ended after it).
    parser.feed(decoder.decode() + "\n\n");
    yield* ready.splice(0);
    finished = true;
  } finally {
    // Leaving early (a Stop click, an exception in the consumer) must also close the connection.
    if (!finished) await reader.cancel().catch(() => undefined);
  }
}
