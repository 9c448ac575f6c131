// Request validation by GLM's rules: each bad input gets a 4xx with GLM's code and a message naming the
// field, and nothing reaches the upstream.
import { beforeAll, describe, expect, it } from "vitest";
import { chat, chatBody, createKey, gw, simStats, type CreatedKey } from "./helpers.ts";

let k: CreatedKey;
beforeAll(async () => {
  k = await createKey();
});

const user = [{ role: "user", content: "hi" }];

describe("chat body validation", () => {
  it.each<[string, unknown, string, RegExp]>([
    ["unknown model", { model: "glm-9", messages: user }, "1211", /model does not exist/],
    ["missing model", { messages: user }, "1213", /model/],
    ["missing messages", { model: "glm-4-plus" }, "1213", /messages/],
    ["empty messages", { model: "glm-4-plus", messages: [] }, "1214", /messages/],
    ["bad role", { model: "glm-4-plus", messages: [{ role: "robot", content: "x" }] }, "1214", /messages\[0\]\.role/],
    ["only a system message", { model: "glm-4-plus", messages: [{ role: "system", content: "x" }] }, "1214", /user/],
    ["user without content", { model: "glm-4-plus", messages: [{ role: "user" }] }, "1214", /content/],
    [
      "tool without tool_call_id",
      { model: "glm-4-plus", messages: [...user, { role: "tool", content: "r" }] },
      "1214",
      /tool_call_id/,
    ],
    ["temperature above 1", { model: "glm-4-plus", messages: user, temperature: 1.5 }, "1214", /temperature/],
    ["top_p as a string", { model: "glm-4-plus", messages: user, top_p: "0.5" }, "1214", /top_p/],
    ["two stop words", { model: "glm-4-plus", messages: user, stop: ["a", "b"] }, "1214", /stop/],
    [
      "max_tokens over the model's output",
      { model: "glm-4-plus", messages: user, max_tokens: 5000 },
      "1214",
      /max_tokens.*4096/,
    ],
    ["max_tokens zero", { model: "glm-4-plus", messages: user, max_tokens: 0 }, "1214", /max_tokens/],
    [
      "bad tool name",
      { model: "glm-4-plus", messages: user, tools: [{ type: "function", function: { name: "bad name!" } }] },
      "1214",
      /tools\[0\]/,
    ],
    ["unknown tool type", { model: "glm-4-plus", messages: user, tools: [{ type: "code" }] }, "1214", /tools\[0\]/],
    ["tool_choice none", { model: "glm-4-plus", messages: user, tool_choice: "none" }, "1214", /tool_choice/],
    [
      "bad response_format",
      { model: "glm-4-plus", messages: user, response_format: { type: "xml" } },
      "1214",
      /response_format/,
    ],
    ["short user_id", { model: "glm-4-plus", messages: user, user_id: "abc" }, "1214", /user_id/],
    ["stream as a string", { model: "glm-4-plus", messages: user, stream: "yes" }, "1214", /stream/],
    ["body is an array", [1, 2], "1214", /body|expected object/],
  ])("%s → 400 %s", async (_name, body, code, message) => {
    const before = (await simStats()).total;
    const res = await chat(k.key, body);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { code: string; message: string } };
    expect(json.error.code).toBe(code);
    expect(json.error.message).toMatch(message);
    expect((await simStats()).total).toBe(before);
  });

  it("malformed JSON → 400 1210", async () => {
    const res = await chat(k.key, '{"model": "glm-4-plus", "messages": [');
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { code: "1210", message: "request body is not valid JSON" } });
  });

  it("wrong content type → 415", async () => {
    const res = await gw("/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "text/plain" },
      body: JSON.stringify(chatBody("x")),
    });
    expect(res.status).toBe(415);
    expect(await res.json()).toMatchObject({ error: { code: "1210" } });
  });

  it("oversized body → 413", async () => {
    const res = await chat(k.key, JSON.stringify(chatBody("x".repeat(9 * 1024 * 1024))));
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: { message: expect.stringContaining("larger than") } });
  });

  it("bad x-queue-timeout-ms → 400", async () => {
    const res = await chat(k.key, chatBody("x"), { "x-queue-timeout-ms": "soon" });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      error: { code: "1214", message: expect.stringContaining("x-queue-timeout-ms") },
    });
  });

  it("wrong method → JSON 405 with Allow", async () => {
    const res = await gw("/v1/chat/completions", { method: "GET", headers: { authorization: `Bearer ${k.key}` } });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
    expect(await res.json()).toMatchObject({ error: { code: "405" } });
  });

  it("accepts unknown extra fields, a string stop word and an assistant tool call", async () => {
    const res = await chat(k.key, {
      model: "glm-4-flash-250414",
      messages: [
        { role: "user", content: "weather" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c1", type: "function", function: { name: "w", arguments: "{}" } }],
        },
        { role: "tool", content: "sunny", tool_call_id: "c1" },
        { role: "user", content: "thanks [[sim: tokens=2]]" },
      ],
      stop: "END",
      thinking: { type: "disabled" },
      meta: { anything: true },
    });
    expect(res.status).toBe(200);
  });
});
