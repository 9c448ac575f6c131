// Tests for the GLM upstream simulator (sim/), over real HTTP on a random loopback port, so the
// gateway's own tests can trust its wire format, faults, concurrency limits and bookkeeping.
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startSimulator, type RunningSimulator } from "./server.ts";
import { simDigest, simTokenCount, type RequestRecord, type SimStats } from "./simulator.ts";

let srv: RunningSimulator;
let base: string; // .../api/paas/v4
let root: string; // for /_sim/*

beforeAll(async () => {
  srv = await startSimulator({ port: 0 });
  base = srv.baseUrl;
  root = srv.url;
});
afterAll(() => srv.close());
beforeEach(async () => {
  await fetch(`${root}/_sim/reset`, { method: "POST" });
});

const AUTH = { Authorization: "Bearer test-id.test-secret" };
const user = (content: string) => [{ role: "user", content }];
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are inspected loosely
type Json = Record<string, any>;

function chat(body: Json, headers: Record<string, string> = {}, init: RequestInit = {}, path = "/chat/completions") {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: { ...AUTH, "Content-Type": "application/json", ...headers },
    body: JSON.stringify({ model: "glm-4-plus", ...body }),
    ...init,
  });
}

async function simGet<T = Json>(path: string): Promise<T> {
  return (await fetch(`${root}${path}`)).json() as Promise<T>;
}
const stats = () => simGet<SimStats>("/_sim/stats");
const requests = () => simGet<RequestRecord[]>("/_sim/requests");
const configure = (patch: Json) => fetch(`${root}/_sim/config`, { method: "POST", body: JSON.stringify(patch) });

/** SSE body → list of `data:` payloads (strings), asserting the event framing on the way. */
function events(text: string): string[] {
  expect(text.endsWith("\n\n")).toBe(true);
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((e) => {
      expect(e.startsWith("data: ")).toBe(true);
      return e.slice(6);
    });
}

async function waitFor<T>(probe: () => Promise<T>, ok: (v: T) => boolean, ms = 1000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v) || Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
}

const decoder = new TextDecoder();
async function readChunk(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  const { value } = await reader.read();
  return decoder.decode(value);
}

describe("wire format", () => {
  it("answers non-stream requests in the GLM shape with deterministic text", async () => {
    const res = await chat({ messages: user("你好 hello"), request_id: "req-42" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json; charset=UTF-8");
    const body = await res.json();
    expect(Object.keys(body)).toEqual(["id", "created", "model", "request_id", "choices", "usage"]);
    expect(body).toMatchObject({ model: "glm-4-plus", request_id: "req-42" });
    expect(body.id).toMatch(/^\d{19}$/);
    expect(Math.abs(body.created - Date.now() / 1000)).toBeLessThan(5);
    expect(body.choices).toEqual([
      { index: 0, finish_reason: "stop", message: { role: "assistant", content: expect.any(String) } },
    ]);
    expect(body.usage).toEqual({
      prompt_tokens: simTokenCount("你好 hello") + 4,
      completion_tokens: 20,
      total_tokens: simTokenCount("你好 hello") + 24,
    });

    const again = await (await chat({ messages: user("你好 hello") })).json();
    expect(again.choices[0].message.content).toBe(body.choices[0].message.content);
    expect(again.request_id).toBe(again.id); // generated when the client sends none
    expect(again.id).not.toBe(body.id);
    const other = await (await chat({ messages: user("something else") })).json();
    expect(other.choices[0].message.content).not.toBe(body.choices[0].message.content);
  });

  it("streams GLM-4 chunks: role every time, no finish_reason until the last chunk, usage, [DONE]", async () => {
    const messages = user("stream me");
    const res = await chat({ messages, stream: true });
    expect(res.headers.get("content-type")).toBe("text/event-stream;charset=UTF-8");
    const data = events(await res.text());
    expect(data.at(-1)).toBe("[DONE]");
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks).toHaveLength(21);
    const [first] = chunks;
    for (const c of chunks.slice(0, -1)) {
      expect(Object.keys(c)).toEqual(["id", "created", "model", "choices"]);
      expect(Object.keys(c.choices[0])).toEqual(["index", "delta"]);
      expect(c.choices[0].delta.role).toBe("assistant");
      expect([c.id, c.created, c.model]).toEqual([first.id, first.created, "glm-4-plus"]);
    }
    const last = chunks.at(-1);
    expect(Object.keys(last)).toEqual(["id", "created", "model", "choices", "usage"]);
    expect(last.choices).toEqual([{ index: 0, finish_reason: "stop", delta: { role: "assistant", content: "" } }]);
    expect(last.usage.completion_tokens).toBe(20);
    const text = chunks.map((c) => c.choices[0].delta.content).join("");
    const sync = await (await chat({ messages })).json();
    expect(text).toBe(sync.choices[0].message.content);
  });

  it("writes each token separately so clients see them arrive one by one", async () => {
    const res = await chat({ messages: user("[[sim: tokens=5 delay=40]]"), stream: true });
    const reader = res.body!.getReader();
    const times: number[] = [];
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      times.push(Date.now());
      text += decoder.decode(value);
    }
    expect(events(text)).toHaveLength(7);
    expect(times.length).toBeGreaterThanOrEqual(5);
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(4 * 40 - 20);
  });

  it("caps at max_tokens with finish_reason length, and accepts the /v1 alias", async () => {
    const body = await (await chat({ messages: user("x"), max_tokens: 3 }, {}, {}, "/chat/completions")).json();
    expect(body.choices[0].finish_reason).toBe("length");
    expect(body.usage.completion_tokens).toBe(3);
    const v1 = await fetch(`${root}/v1/models`, { headers: AUTH });
    const list = await v1.json();
    expect(list.object).toBe("list");
    expect(list.data.map((m: Json) => m.id)).toContain("glm-4-flash-250414");
    expect(list.data[0]).toEqual({
      id: "glm-4-plus",
      object: "model",
      created: expect.any(Number),
      owned_by: "zhipuai",
    });
  });

  it("counts prompt tokens with the fake tokenizer", () => {
    expect(simTokenCount("你好世界")).toBe(3); // ceil(4 × 0.7)
    expect(simTokenCount("abcdefgh")).toBe(2);
    expect(simTokenCount("hello 你好")).toBe(3); // ceil(2 × 0.7 + 6 / 4)
    expect(simTokenCount("")).toBe(0);
  });
});

describe("client compatibility", () => {
  it("works with the openai SDK pointed at the base URL, sync and streaming", async () => {
    const client = new OpenAI({ baseURL: base, apiKey: "id.secret", maxRetries: 0 });
    const messages = [{ role: "user" as const, content: "[[sim: tokens=4]] hi" }];
    const sync = await client.chat.completions.create({ model: "glm-4-plus", messages });
    expect(sync.usage?.completion_tokens).toBe(4);
    let text = "";
    let usage;
    for await (const chunk of await client.chat.completions.create({ model: "glm-4-plus", messages, stream: true })) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(sync.choices[0]!.message.content);
    expect(usage).toEqual(sync.usage);
    await expect(client.chat.completions.create({ model: "nope", messages })).rejects.toMatchObject({ status: 400 });
  });
});

describe("auth and validation", () => {
  it("requires an Authorization header, bearer or bare JWT, and the configured key when set", async () => {
    const missing = await chat({ messages: user("hi") }, { Authorization: "" });
    expect(missing.status).toBe(401);
    expect((await missing.json()).error.code).toBe("1001");
    expect((await chat({ messages: user("hi") }, { Authorization: "eyJhbGciOi.payload.sig" })).status).toBe(200);
    await configure({ apiKey: "sekrit" });
    const wrong = await chat({ messages: user("hi") });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toEqual({ error: { code: "1000", message: expect.any(String) } });
    expect((await chat({ messages: user("hi") }, { Authorization: "Bearer sekrit" })).status).toBe(200);
  });

  it("rejects bad bodies with 1210/1214 naming the field and unknown models with 1211", async () => {
    const broken = await fetch(`${base}/chat/completions`, { method: "POST", headers: AUTH, body: "{nope" });
    expect(broken.status).toBe(400);
    expect((await broken.json()).error.code).toBe("1210");
    const empty = await (await chat({ messages: [] })).json();
    expect(empty.error.code).toBe("1214");
    expect(empty.error.message).toContain("messages");
    const maxTokens = await (await chat({ messages: user("x"), max_tokens: 0 })).json();
    expect(maxTokens.error.message).toContain("max_tokens");
    const unknown = await chat({ model: "glm-5-imaginary", messages: user("x") });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toEqual({ error: { code: "1211", message: "模型不存在，请检查模型代码。" } });
  });

  it("rejects prompts beyond the context window with 1261", async () => {
    const airx = await chat({ model: "glm-4-airx", messages: user("x"), max_tokens: 8000 });
    expect(airx.status).toBe(400);
    expect((await airx.json()).error.code).toBe("1261");
    await configure({ contextTokens: 50 });
    expect((await chat({ messages: user("a".repeat(400)) })).status).toBe(400);
    expect((await chat({ messages: user("a".repeat(100)) })).status).toBe(200);
  });
});

describe("tools, web search and documents", () => {
  const tools = [
    {
      type: "function",
      function: {
        name: "get_weather",
        parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer" } } },
      },
    },
    {
      type: "function",
      function: {
        name: "lookup",
        parameters: { type: "object", properties: { unit: { type: "string", enum: ["c", "f"] } } },
      },
    },
  ];

  it("answers with a tool call when asked, whole in one chunk when streaming", async () => {
    const body = await (await chat({ messages: user("weather? [[sim:tool]]"), tools })).json();
    const choice = body.choices[0];
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBeNull();
    const [call] = choice.message.tool_calls;
    expect(call).toMatchObject({ type: "function", index: 0, function: { name: "get_weather" } });
    expect(Object.keys(JSON.parse(call.function.arguments))).toEqual(["city", "days"]);

    const data = events(await (await chat({ messages: user("[[sim: tool=lookup]]"), tools, stream: true })).text());
    expect(data).toHaveLength(2);
    const chunk = JSON.parse(data[0]!);
    expect(chunk.choices[0].finish_reason).toBe("tool_calls");
    expect(chunk.choices[0].delta.tool_calls[0].function).toEqual({ name: "lookup", arguments: '{"unit":"c"}' });
    expect(chunk.usage.completion_tokens).toBeGreaterThan(0);
    expect(data[1]).toBe("[DONE]");
  });

  it("adds web_search results to the body and to the final chunk", async () => {
    const ws = [{ type: "web_search", web_search: { enable: true, search_query: "GLM" } }];
    const body = await (await chat({ messages: user("news"), tools: ws })).json();
    expect(body.web_search[0]).toEqual({
      icon: expect.any(String),
      title: expect.stringContaining("GLM"),
      link: expect.any(String),
      media: expect.any(String),
      content: expect.any(String),
    });
    const chunks = events(await (await chat({ messages: user("news"), tools: ws, stream: true })).text())
      .slice(0, -1)
      .map((d) => JSON.parse(d));
    expect(chunks.at(-1).web_search).toEqual(body.web_search);
    expect(chunks.slice(0, -1).every((c) => !("web_search" in c))).toBe(true);
  });

  it("digests <document> blocks, quoting earlier digests in order", async () => {
    const a = simDigest("part one");
    const b = simDigest("part two");
    const doc = `summaries:\n${a}\n${b}`;
    const prompt = `Combine these.\n<document>\n${doc}\n</document>\nThanks`;
    const body = await (await chat({ messages: user(prompt) })).json();
    expect(body.choices[0].message.content).toBe(`${simDigest(doc)} ${a} ${b}`);
    expect(simDigest(doc)).toMatch(/^⟦digest [0-9a-f]{8} len=\d+⟧$/);
    const chunks = events(await (await chat({ messages: user(prompt), stream: true })).text()).slice(0, -2);
    expect(chunks.length).toBeGreaterThan(3);
    expect(chunks.map((d) => JSON.parse(d).choices[0].delta.content).join("")).toBe(body.choices[0].message.content);
    expect((await requests()).at(-1)!.document_digest).toBe(simDigest(doc));
  });
});

describe("async tasks", () => {
  it("reports PROCESSING until the generation time passed, then SUCCESS", async () => {
    const submit = await (
      await chat({ messages: user("later [[sim: ttft=150]]") }, {}, {}, "/async/chat/completions")
    ).json();
    expect(Object.keys(submit)).toEqual(["id", "request_id", "model", "task_status"]);
    expect(submit.task_status).toBe("PROCESSING");
    const poll = () => fetch(`${base}/async-result/${submit.id}`, { headers: AUTH }).then((r) => r.json());
    expect(await poll()).toMatchObject({ task_status: "PROCESSING", model: null });
    await new Promise((r) => setTimeout(r, 200));
    const done = await poll();
    expect(done).toMatchObject({ id: submit.id, model: "glm-4-plus", task_status: "SUCCESS" });
    expect(done.choices[0].message.content).toEqual(expect.any(String));
    expect((await stats()).usage.completion_tokens).toBe(done.usage.completion_tokens);
    const missing = await fetch(`${base}/async-result/nope`, { headers: AUTH });
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toEqual(expect.any(String));
  });
});

describe("concurrency", () => {
  it("enforces the per-model in-flight limit with 1302 and frees slots on disconnect", async () => {
    await configure({ concurrencyOverride: 2 });
    const hangers = [new AbortController(), new AbortController()];
    const pending = hangers.map((ac) =>
      chat({ messages: user("[[sim: hang]]") }, {}, { signal: ac.signal }).catch(() => "aborted"),
    );
    await waitFor(stats, (s) => s.in_flight === 2);

    const over = await chat({ messages: user("one too many") });
    expect(over.status).toBe(429);
    expect(over.headers.get("retry-after")).toBeNull();
    expect(await over.json()).toEqual({
      error: { code: "1302", message: "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。" },
    });
    const en = await chat({ messages: user("x") }, { "Accept-Language": "en-US,en" });
    expect((await en.json()).error.message).toBe("Rate limit reached for requests");
    expect((await chat({ model: "glm-4-air-250414", messages: user("other model") })).status).toBe(200);

    hangers.forEach((ac) => ac.abort());
    await Promise.all(pending);
    const s = await waitFor(stats, (s) => s.in_flight === 0);
    expect(s).toMatchObject({ in_flight: 0, max_in_flight: 3, cancelled: 2, errors: 2 }); // 3: the air request too
    expect(s.by_model["glm-4-plus"]).toEqual({ in_flight: 0, max_in_flight: 2, total: 4 });
    expect((await requests()).filter((r) => r.ended === "hang")).toHaveLength(2);
  });

  it("uses the tier table (glm-4-airx allows 5 at V0)", async () => {
    await configure({ tier: "V0" });
    const ac = new AbortController();
    const pending = Array.from({ length: 5 }, () =>
      chat({ model: "glm-4-airx", messages: user("[[sim: hang]]") }, {}, { signal: ac.signal }).catch(() => null),
    );
    await waitFor(stats, (s) => s.in_flight === 5);
    expect((await chat({ model: "glm-4-airx", messages: user("x") })).status).toBe(429);
    ac.abort();
    await Promise.all(pending);
  });
});

describe("faults and timing", () => {
  it("notices a client disconnect mid-stream within ~100 ms", async () => {
    const ac = new AbortController();
    const res = await chat({ messages: user("[[sim: tokens=100 delay=50]]"), stream: true }, {}, { signal: ac.signal });
    const reader = res.body!.getReader();
    expect(await readChunk(reader)).toContain('"delta"');
    expect((await stats()).in_flight).toBe(1);
    const t0 = Date.now();
    ac.abort();
    const s = await waitFor(stats, (s) => s.cancelled === 1 && s.in_flight === 0);
    expect(s).toMatchObject({ cancelled: 1, in_flight: 0, completed: 0 });
    expect(Date.now() - t0).toBeLessThan(150);
    const [rec] = await requests();
    expect(rec).toMatchObject({ ended: "cancelled", status: 200, stream: true });
    expect(rec!.completion_tokens).toBeLessThan(100);
    expect(s.usage.completion_tokens).toBe(0); // the final chunk never went out
  });

  it("resets the connection after break_after chunks", async () => {
    const res = await chat({ messages: user("[[sim: tokens=10 break_after=3]]"), stream: true });
    const reader = res.body!.getReader();
    let text = "";
    await expect(
      (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          text += decoder.decode(value);
        }
      })(),
    ).rejects.toThrow();
    expect(text.split("\n\n").filter(Boolean)).toHaveLength(3);
    expect(text).not.toContain("[DONE]");
    await expect(chat({ messages: user("[[sim: break]]") })).rejects.toThrow();
    expect((await requests()).map((r) => r.ended)).toEqual(["break", "break"]);
    expect((await stats()).errors).toBe(2);
  });

  it("hangs after hang_after chunks until the client leaves", async () => {
    const ac = new AbortController();
    const res = await chat({ messages: user("[[sim: hang_after=2]]"), stream: true }, {}, { signal: ac.signal });
    const reader = res.body!.getReader();
    let text = "";
    while (text.split("\n\n").length < 3) text += await readChunk(reader);
    const more = await Promise.race([
      reader.read().then(() => "data"),
      new Promise((r) => setTimeout(r, 150, "silence")),
    ]);
    expect(more).toBe("silence");
    ac.abort();
    await waitFor(requests, (r) => r[0]?.ended === "hang");
    expect((await requests())[0]).toMatchObject({ ended: "hang", completion_tokens: 2 });
    expect((await stats()).in_flight).toBe(0);
  });

  it("answers forced errors with the right status, or in-band mid-stream", async () => {
    const busy = await chat({ messages: user("[[sim: error=1305]]") });
    expect(busy.status).toBe(429);
    expect((await busy.json()).error.code).toBe("1305");
    expect((await chat({ messages: user("[[sim: error=1113 status=402]]") })).status).toBe(402);
    expect((await chat({ messages: user("[[sim: error=1234]]") })).status).toBe(500);
    expect((await chat({ messages: user("[[sim: error=1003]]") })).status).toBe(401);

    const res = await chat({ messages: user("[[sim: error=1234 error_after=2]]"), stream: true });
    expect(res.status).toBe(200);
    const data = events(await res.text());
    expect(data).toHaveLength(3);
    expect(JSON.parse(data[2]!)).toEqual({ error: { code: "1234", message: expect.any(String) } });
    expect((await stats()).errors).toBe(5);
  });

  it("overrides the finish reason, and the x-sim header wins over the marker", async () => {
    const body = await (await chat({ messages: user("[[sim: finish=sensitive]]") })).json();
    expect(body.choices[0].finish_reason).toBe("sensitive");
    const data = events(
      await (
        await chat({ messages: user("[[sim: tokens=3 finish=network_error]]"), stream: true }, { "x-sim": "tokens=5" })
      ).text(),
    );
    expect(data).toHaveLength(7);
    expect(JSON.parse(data[5]!).choices[0].finish_reason).toBe("network_error");
  });

  it("delays the first byte by ttft: whole answer for sync, first chunk (not headers) for SSE", async () => {
    let t0 = Date.now();
    await (await chat({ messages: user("[[sim: ttft=150]]") })).json();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    t0 = Date.now();
    const res = await chat({ messages: user("[[sim: ttft=300]]"), stream: true });
    expect(Date.now() - t0).toBeLessThan(200);
    await readChunk(res.body!.getReader());
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });

  it("replays the same chaos for the same seed", async () => {
    const run = async () => {
      await configure({ chaos: { seed: 7, errorRate: 0.3, breakRate: 0.2 } });
      const outcomes: string[] = [];
      for (let i = 0; i < 12; i++) {
        outcomes.push(
          await chat({ messages: user(`q${i}`) }).then(
            (r) => String(r.status),
            () => "reset",
          ),
        );
      }
      await fetch(`${root}/_sim/reset`, { method: "POST" });
      return outcomes;
    };
    const first = await run();
    expect(await run()).toEqual(first);
    expect(new Set(first).size).toBeGreaterThan(1);
  });
});

describe("observability", () => {
  it("sums the usage it reported and logs recent requests; reset clears both", async () => {
    const a = await (await chat({ messages: user("one") })).json();
    const b = events(await (await chat({ messages: user("two"), stream: true })).text());
    const usageB = JSON.parse(b.at(-2)!).usage;
    const s = await stats();
    expect(s).toMatchObject({ total: 2, completed: 2, cancelled: 0, errors: 0, in_flight: 0 });
    expect(s.usage).toEqual({
      prompt_tokens: a.usage.prompt_tokens + usageB.prompt_tokens,
      completion_tokens: a.usage.completion_tokens + usageB.completion_tokens,
    });
    const log = await simGet<RequestRecord[]>("/_sim/requests?limit=1");
    expect(log).toEqual([
      expect.objectContaining({
        seq: 2,
        model: "glm-4-plus",
        stream: true,
        ended: "completed",
        status: 200,
        last_user_excerpt: "two",
      }),
    ]);
    expect((await simGet("/_sim/config")).tier).toBe("V3");

    await fetch(`${root}/_sim/reset`, { method: "POST" });
    expect(await stats()).toMatchObject({ total: 0, usage: { prompt_tokens: 0, completion_tokens: 0 } });
    expect(await requests()).toEqual([]);
  });

  it("close() ends even with a request hanging open", async () => {
    const other = await startSimulator({ port: 0 });
    const pending = fetch(`${other.baseUrl}/chat/completions`, {
      method: "POST",
      headers: AUTH,
      body: JSON.stringify({ model: "glm-4-plus", messages: user("[[sim: hang]]") }),
    }).catch(() => "closed");
    await waitFor(
      async () => other.sim.stats(),
      (s) => s.in_flight === 1,
    );
    await other.close();
    expect(await pending).toBe("closed");
  });
});
