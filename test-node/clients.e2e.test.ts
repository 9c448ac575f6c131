// End to end: real client SDKs pointed at the gateway under `wrangler dev`, with the GLM simulator
// upstream — the official `openai` npm SDK at both base URLs clients use ({gateway}/v1 and
// {gateway}/api/paas/v4), and Zhipu's own `zhipuai-sdk-nodejs-v4`, which sends a bare GLM JWT.
import OpenAI from "openai";
import { ZhipuAI } from "zhipuai-sdk-nodejs-v4";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startE2E, type E2E } from "../test-support/harness.ts";

let e2e: E2E;
let key: string;

beforeAll(async () => {
  e2e = await startE2E();
  key = (await e2e.createKey()).key;
});

afterAll(async () => {
  await e2e?.close();
});

describe("openai SDK through the gateway", () => {
  it.each(["/v1", "/api/paas/v4"])("reads a plain answer via %s", async (base) => {
    const client = new OpenAI({ apiKey: key, baseURL: `${e2e.url}${base}`, maxRetries: 0 });
    const res = await client.chat.completions.create({
      model: "glm-4-flash-250414",
      messages: [{ role: "user", content: "hello [[sim: tokens=7]]" }],
    });
    expect(res.choices[0]?.message.content).toBeTruthy();
    expect(res.choices[0]?.finish_reason).toBe("stop");
    expect(res.usage?.completion_tokens).toBe(7);
  });

  it("reads a streamed answer token by token, with usage in the last chunk", async () => {
    const client = new OpenAI({ apiKey: key, baseURL: `${e2e.url}/v1`, maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: "glm-4-flash-250414",
      messages: [{ role: "user", content: "stream please [[sim: tokens=12]]" }],
      stream: true,
    });
    const parts: string[] = [];
    let usage: { completion_tokens: number } | undefined;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      parts.push(chunk.choices[0]?.delta.content ?? "");
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(parts.filter(Boolean).length).toBe(12);
    expect(finish).toBe("stop");
    expect(usage?.completion_tokens).toBe(12);
  });

  it("surfaces a GLM error as an APIError with GLM's code", async () => {
    const client = new OpenAI({ apiKey: key, baseURL: `${e2e.url}/v1`, maxRetries: 0 });
    const err = await client.chat.completions
      .create({ model: "glm-9", messages: [{ role: "user", content: "x" }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(400);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe("1211");
  });
});

describe("Zhipu's Node SDK (bare JWT, no Bearer) through the gateway", () => {
  it("reads a plain answer", async () => {
    const ai = new ZhipuAI({ apiKey: key, baseUrl: `${e2e.url}/api/paas/v4`, cacheToken: false });
    const data = (await ai.createCompletions({
      model: "glm-4-flash-250414",
      messages: [{ role: "user", content: "你好 [[sim: tokens=5]]" }],
      stream: false,
    })) as unknown as { choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
    expect(data.choices[0]?.message.content).toBeTruthy();
    expect(data.usage.completion_tokens).toBe(5);
  });

  it("reads a streamed answer", async () => {
    const ai = new ZhipuAI({ apiKey: key, baseUrl: `${e2e.url}/api/paas/v4`, cacheToken: false });
    const stream = (await ai.createCompletions({
      model: "glm-4-flash-250414",
      messages: [{ role: "user", content: "流式 [[sim: tokens=6]]" }],
      stream: true,
    })) as unknown as AsyncIterable<Buffer>;
    let text = "";
    for await (const chunk of stream) text += chunk.toString();
    const events = text.split("\n\n").filter((e) => e.startsWith("data: "));
    expect(events.at(-1)).toBe("data: [DONE]");
    expect(events.length).toBe(6 + 2);
  });

  it("is refused with a wrong secret", async () => {
    const ai = new ZhipuAI({
      apiKey: `${key.split(".")[0]}.wrongwrongwrongwrongwrongwrong`,
      baseUrl: `${e2e.url}/api/paas/v4`,
      cacheToken: false,
    });
    const err = await ai
      .createCompletions({ model: "glm-4-flash-250414", messages: [{ role: "user", content: "x" }], stream: false })
      .catch((e: unknown) => e);
    expect(JSON.stringify(err)).toMatch(/1004|401/);
  });
});
