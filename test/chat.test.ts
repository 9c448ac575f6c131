// Chat completions through the gateway against the simulator: bytes pass through unchanged, every
// failure mode ends clearly (HTTP error before the first byte, in-band error after), and a client that
// leaves stops the upstream request.
import { beforeAll, describe, expect, it } from "vitest";
import { withRequestId } from "../src/chat/service.ts";
import {
  admin,
  chat,
  chatBody,
  chatWithEnv,
  createKey,
  simRequests,
  simStats,
  sseData,
  waitFor,
  type CreatedKey,
} from "./helpers.ts";

let k: CreatedKey;
beforeAll(async () => {
  k = await createKey({ tier: "V3" });
});

function fnv1a(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

async function simRecord(requestId: string): Promise<Record<string, unknown>> {
  const rows = await waitFor(
    () => simRequests(200),
    (rs) => rs.some((r) => r["request_id"] === requestId && r["ended"] !== null),
  );
  const row = rows.find((r) => r["request_id"] === requestId);
  if (!row) throw new Error(`simulator never saw ${requestId}`);
  return row;
}

async function inFlight(id: string): Promise<Record<string, number>> {
  return ((await (await admin("GET", `/keys/${id}`)).json()) as { in_flight: Record<string, number> }).in_flight;
}

describe("pass-through", () => {
  it("streams the simulator's bytes unchanged, with the limit headers", async () => {
    const rid = `stream-${crypto.randomUUID()}`;
    const res = await chat(
      k.key,
      chatBody("tell me [[sim: tokens=40]]", {
        stream: true,
        request_id: rid,
        temperature: 0.5,
        some_new_field: { x: 1 },
      }),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream;charset=UTF-8");
    expect(res.headers.get("x-request-id")).toBe(rid);
    expect(res.headers.get("x-concurrency-limit")).toBe("3000");
    expect(res.headers.get("x-concurrency-in-flight")).toBe("1");
    const bytes = new Uint8Array(await res.arrayBuffer());
    const sent = await simRecord(rid);
    expect(bytes.byteLength).toBe(sent["body_bytes"]);
    expect(fnv1a(bytes)).toBe(sent["body_fnv"]);
    const data = sseData(new TextDecoder().decode(bytes));
    expect(data.at(-1)).toBe("[DONE]");
    expect(JSON.parse(data.at(-2)!)).toMatchObject({
      choices: [{ finish_reason: "stop" }],
      usage: { completion_tokens: 40 },
    });
  });

  it("returns the plain JSON body unchanged with x-cost-cny", async () => {
    const rid = `plain-${crypto.randomUUID()}`;
    const body = chatBody("plain [[sim: tokens=9]]", { model: "glm-4-plus", request_id: rid });
    const res = await chat(k.key, body);
    expect(res.status).toBe(200);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const sent = await simRecord(rid);
    expect(fnv1a(bytes)).toBe(sent["body_fnv"]);
    const json = JSON.parse(new TextDecoder().decode(bytes)) as {
      usage: { prompt_tokens: number; completion_tokens: number };
    };
    // glm-4-plus: 5 CNY per million tokens in and out.
    const expected = ((json.usage.prompt_tokens + json.usage.completion_tokens) * 5) / 1e6;
    expect(Number(res.headers.get("x-cost-cny"))).toBeCloseTo(expected, 12);
    expect(res.headers.get("x-concurrency-limit")).toBe("500");
  });

  it("injects a generated request_id upstream and returns it", async () => {
    const res = await chat(k.key, chatBody("id please [[sim: tokens=2]]"));
    const rid = res.headers.get("x-request-id")!;
    expect(rid).toMatch(/^[0-9a-f-]{36}$/);
    const json = (await res.json()) as { request_id: string };
    expect(json.request_id).toBe(rid);
    await simRecord(rid);
  });

  it("uses the caller's x-request-id header when the body has none", async () => {
    const res = await chat(k.key, chatBody("hdr [[sim: tokens=2]]"), { "x-request-id": "caller-chosen-1" });
    expect(res.headers.get("x-request-id")).toBe("caller-chosen-1");
    expect(((await res.json()) as { request_id: string }).request_id).toBe("caller-chosen-1");
  });

  it("passes tool calls and web_search results through", async () => {
    const tools = [
      { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: {} } } },
      { type: "web_search", web_search: { enable: true } },
    ];
    const res = await chat(k.key, chatBody("weather? [[sim:tool]]", { tools }));
    const json = (await res.json()) as {
      choices: { finish_reason: string; message: { tool_calls: { function: { name: string } }[] } }[];
      web_search?: unknown[];
    };
    expect(json.choices[0]!.finish_reason).toBe("tool_calls");
    expect(json.choices[0]!.message.tool_calls[0]!.function.name).toBe("get_weather");
    expect(Array.isArray(json.web_search)).toBe(true);
  });

  it("withRequestId keeps every other byte of the body", () => {
    const raw = ' {"model":"m","messages":[],"x":{"deep":[1,2]}}';
    const out = withRequestId(raw, "r1");
    expect(JSON.parse(out)).toEqual({ request_id: "r1", model: "m", messages: [], x: { deep: [1, 2] } });
    expect(out.endsWith(raw.slice(2))).toBe(true);
    expect(JSON.parse(withRequestId("{}", "r2"))).toEqual({ request_id: "r2" });
  });
});

describe("failures", () => {
  it("ends a stream that breaks mid-way with an in-band error, never [DONE]", async () => {
    const res = await chat(k.key, chatBody("break [[sim: tokens=30 break_after=5]]", { stream: true }));
    expect(res.status).toBe(200);
    const data = sseData(await res.text());
    expect(data).not.toContain("[DONE]");
    const last = JSON.parse(data.at(-1)!) as { error: { code: string; message: string } };
    expect(last.error.code).toBe("1234");
    expect(last.error.message).toMatch(/incomplete/);
    expect(data.filter((d) => d.includes('"delta"')).length).toBe(5);
  });

  it("passes an upstream in-band error through as the last event", async () => {
    const res = await chat(k.key, chatBody("x [[sim: tokens=10 error=1301 error_after=3]]", { stream: true }));
    const data = sseData(await res.text());
    expect(data).not.toContain("[DONE]");
    expect(JSON.parse(data.at(-1)!)).toMatchObject({ error: { code: "1301" } });
    // Exactly one error event: the gateway adds nothing when the upstream already said why.
    expect(data.filter((d) => d.includes('"error"')).length).toBe(1);
  });

  it("ends a stream that goes silent with an in-band timeout error", async () => {
    const res = await chat(k.key, chatBody("x [[sim: tokens=10 hang_after=2]]", { stream: true }));
    const data = sseData(await res.text());
    expect(JSON.parse(data.at(-1)!)).toMatchObject({
      error: { code: "1234", message: expect.stringContaining("sent nothing") },
    });
    await waitFor(
      () => inFlight(k.id),
      (f) => Object.values(f).every((n) => n === 0),
    );
  });

  it("answers 504 when the upstream never sends headers", async () => {
    const res = await chat(k.key, chatBody("x [[sim: hang]]"));
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ error: { code: "1234" } });
  });

  it.each([
    ["1305", 429],
    ["1302", 429],
    ["1261", 400],
    ["500", 500],
    ["1113", 429],
  ])("passes upstream error %s through with status %i", async (code, status) => {
    const res = await chat(k.key, chatBody(`x [[sim: error=${code}]]`));
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ error: { code } });
    if (code === "1305" || code === "1302") expect(res.headers.get("retry-after")).toBe("1");
  });

  it("answers 502 when the upstream is unreachable, and 503 naming a missing GLM_API_KEY", async () => {
    const down = await chatWithEnv(k.key, { GLM_BASE_URL: "http://127.0.0.1:9/api/paas/v4" });
    expect(down.status).toBe(502);
    expect(await down.json()).toMatchObject({
      error: { code: "1234", message: expect.stringContaining("unreachable") },
    });
    const noKey = await chatWithEnv(k.key, { GLM_API_KEY: "" });
    expect(noKey.status).toBe(503);
    const text = await noKey.text();
    expect(text).toContain("GLM_API_KEY");
    expect(text).not.toContain("sim-upstream.key");
  });
});

describe("client disconnect", () => {
  it("cancels the upstream request and frees the slot", async () => {
    const before = await simStats();
    const ac = new AbortController();
    const res = await chat(k.key, chatBody("long [[sim: tokens=500 delay=20]]", { stream: true }), {}, ac.signal);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    expect(Object.values(await inFlight(k.id)).reduce((a, b) => a + b, 0)).toBe(1);
    ac.abort();
    await reader.cancel().catch(() => undefined);
    const after = await waitFor(simStats, (s) => s.cancelled > before.cancelled);
    expect(after.cancelled).toBe(before.cancelled + 1);
    const flights = await waitFor(
      () => inFlight(k.id),
      (f) => Object.values(f).every((n) => n === 0),
    );
    expect(Object.values(flights).every((n) => n === 0)).toBe(true);
  });
});
