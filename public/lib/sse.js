// Server-sent events from a fetch() body, read as they arrive: yields {data} per event and {comment} per
// comment line (": …"). Handles CRLF, events split across network chunks and multi-line data fields.

/** @param {ReadableStream<Uint8Array>} body */
export async function* readSse(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let carry = ""; // a trailing "\r" whose "\n" may come in the next network chunk
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let text = carry + decoder.decode(value, { stream: true });
      carry = text.endsWith("\r") ? "\r" : "";
      if (carry) text = text.slice(0, -1);
      buffer += text.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        yield* parseBlock(block);
      }
    }
    buffer += (carry + decoder.decode()).replace(/\r\n?/g, "\n");
    if (buffer.trim() !== "") yield* parseBlock(buffer);
    finished = true;
  } finally {
    // Leaving early (a Stop click, an exception in the consumer) must also close the connection.
    if (!finished) await reader.cancel().catch(() => undefined);
  }
}

function* parseBlock(block) {
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) {
      yield { comment: line.slice(1).trim() };
      continue;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
  }
  if (data.length) yield { data: data.join("\n") };
}
