// Unit tests for the summary's SSE body (src/summarize/stream.ts) over a hand-fed upstream stream: the
// upstream bytes pass through unchanged, [DONE] is found even when split across chunks (and not inside a
// string), the closing chunk comes right before it, failures never end with [DONE], and silences get
// keep-alive comments.
import { describe, expect, it } from "vitest";
import type { Outcome } from "../src/pipeline/index.ts";
import { relaySse } from "../src/pipeline/relay.ts";
import type { OpenStream } from "../src/summarize/calls.ts";
import { SseSink, type SseSinkOptions } from "../src/summarize/stream.ts";
import { sseData } from "./helpers.ts";

const enc = new TextEncoder();

/** A final step as the pipeline hands it over: the relayed body and the call's outcome. */
function upstream(chunks: string[]): { open: OpenStream; outcome: Promise<Outcome> } {
  let finished!: (o: Outcome) => void;
  const outcome = new Promise<Outcome>((r) => (finished = r));
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(enc.encode(chunk));
      c.close();
    },
  });
  const relayed = relaySse(
    { response: new Response(body), abort: () => undefined, abortReason: () => undefined },
    {
      idleTimeoutMs: 5_000,
      stallMs: 30_000,
      renewEveryMs: 10_000,
      renew: async () => true,
      onEnd: (o) =>
        finished({
          status: 200,
          ended: o.ended,
          record: {} as Outcome["record"],
          attempts: 1,
          account: "default",
          ...(o.finishReason ? { finishReason: o.finishReason } : {}),
        }),
    },
  );
  return { outcome, open: { body: relayed, outcome } };
}

function sink(
  closing: SseSinkOptions["closing"] = () => ({ fields: { usage: { total_tokens: 7 } } }),
  keepAliveMs?: number,
) {
  return new SseSink({
    id: "sum_test",
    model: "glm-test",
    onCancel: () => undefined,
    closing,
    ...(keepAliveMs ? { keepAliveMs } : {}),
  });
}

const content = (text: string) =>
  `data: {"id":"1","choices":[{"index":0,"delta":{"role":"assistant","content":${JSON.stringify(text)}}}]}\n\n`;
const last =
  'data: {"id":"1","choices":[{"index":0,"finish_reason":"stop","delta":{"role":"assistant","content":""}}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n';

describe("summary SSE body", () => {
  it("passes the upstream bytes through, then the closing chunk, then one [DONE] — even with [DONE] split across chunks", async () => {
    const s = sink();
    s.progress({ stage: "map", done: 0, total: 2 });
    const up = upstream([
      content("data: [DONE] is just text here"),
      content("\nsecond"),
      last + "data: [DO",
      "NE]\n\n",
    ]);
    void s.final(up.open);
    const text = await new Response(s.readable).text();
    const data = sseData(text);
    expect(data[0]).toBe(
      '{"id":"sum_test","created":' +
        JSON.parse(data[0]!).created +
        ',"model":"glm-test","choices":[],"progress":{"stage":"map","done":0,"total":2}}',
    );
    expect(text).toContain(content("data: [DONE] is just text here") + content("\nsecond") + last);
    expect(data.filter((d) => d === "[DONE]")).toHaveLength(1);
    expect(data.at(-1)).toBe("[DONE]");
    expect(JSON.parse(data.at(-2)!)).toMatchObject({ id: "sum_test", choices: [], usage: { total_tokens: 7 } });
    expect((await up.outcome).ended).toBe("completed");
  });

  it("ends with the closing error instead of [DONE] when the upstream finished badly", async () => {
    const s = sink(() => ({ error: { code: "1234", message: "incomplete" } }));
    const bad = last.replace('"stop"', '"network_error"');
    void s.final(upstream([content("partial"), bad, "data: [DONE]\n\n"]).open);
    const data = sseData(await new Response(s.readable).text());
    expect(data).not.toContain("[DONE]");
    expect(JSON.parse(data.at(-1)!)).toEqual({ error: { code: "1234", message: "incomplete" } });
  });

  it("keeps an upstream break's in-band error and adds no [DONE]", async () => {
    const s = sink();
    void s.final(upstream([content("cut")]).open); // no final chunk, no [DONE]: the relay reports a break
    const data = sseData(await new Response(s.readable).text());
    expect(data).not.toContain("[DONE]");
    expect(JSON.parse(data.at(-1)!)).toMatchObject({ error: { code: "1234" } });
  });

  it("fails in-band, without [DONE], when the summary fails before the final step", async () => {
    const s = sink();
    s.progress({ stage: "map", done: 1, total: 3 });
    s.fail("1305", "summarizing piece 2 of 3 failed twice");
    const data = sseData(await new Response(s.readable).text());
    expect(data).toHaveLength(2);
    expect(JSON.parse(data[1]!)).toEqual({ error: { code: "1305", message: "summarizing piece 2 of 3 failed twice" } });
  });

  it("sends a keep-alive comment during a long silence, which SSE parsers skip", async () => {
    const s = sink(undefined, 30);
    s.progress({ stage: "map", done: 0, total: 1 });
    const reader = s.readable.getReader();
    await reader.read();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe(": keep-alive\n\n");
    s.fail("500", "stop");
    await reader.cancel();
  });
});

describe("collecting a step's answer", () => {
  it("reads GLM's SSE with LF, CRLF or CR line ends and events split anywhere", async () => {
    const { collectSse } = await import("../src/summarize/collect.ts");
    const events = [content("Hello, "), content("world"), last, "data: [DONE]\n\n"].join("");
    for (const eol of ["\n", "\r\n", "\r"]) {
      const text = events.replaceAll("\n", eol);
      const cuts = [0, 7, 33, 90, text.length - 3, text.length];
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 1; i < cuts.length; i++) c.enqueue(enc.encode(text.slice(cuts[i - 1], cuts[i])));
          c.close();
        },
      });
      const got = await collectSse(body);
      expect(got, JSON.stringify(eol)).toMatchObject({
        content: "Hello, world",
        finishReason: "stop",
        events: 3,
        usage: { total_tokens: 7 },
      });
    }
  });
});
