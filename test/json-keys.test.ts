// Duplicate top-level keys: the gateway must never limit and bill one model while GLM runs another, so a
// JSON body naming a top-level field twice is refused with 400 (1214) on every JSON route; the scan that
// finds them reads the top level only and is linear in the body's length.
import { beforeAll, describe, expect, it } from "vitest";
import { duplicateTopLevelKey } from "../src/http/json-keys.ts";
import { admin, chat, createKey, gw, simStats, type CreatedKey } from "./helpers.ts";

describe("duplicateTopLevelKey", () => {
  it.each<[string, string | undefined]>([
    ['{"model":"a","model":"b"}', "model"],
    ['{ "model" : "a" , "messages" : [] , "model" : "b" }', "model"],
    ['{"model":"a","mo\\u0064el":"b"}', "model"],
    ['{"a":{"x":1,"x":2},"b":[{"y":1},{"y":2}]}', undefined],
    ['{"a":"} , \\"a\\": 1","b":"\\\\","a":2}', "a"],
    ['{"a":[1,[2,{"a":3}]],"c":true,"d":null,"e":-1.5e3,"c":false}', "c"],
    ['{"a":1}', undefined],
    ["{}", undefined],
    ['[{"a":1},{"a":1}]', undefined],
    ['{"a":1,"a"', "a"],
    ['{"a":"unterminated', undefined],
    ["not json", undefined],
  ])("%s → %s", (text, key) => {
    expect(duplicateTopLevelKey(text)).toBe(key);
  });

  it("is linear: megabytes of nesting, escapes and keys take milliseconds", () => {
    const cases = [
      `{"a":${"[".repeat(200_000)}${"]".repeat(200_000)},"a":1}`,
      `{"a":"${'\\"'.repeat(500_000)}","a":1}`,
      `{${Array.from({ length: 100_000 }, (_, i) => `"k${i}":${i}`).join(",")},"k0":1}`,
      `{"a":"${"\\\\".repeat(500_000)}","a":1}`,
      `{"a":[${'"x",'.repeat(300_000)}"x"],"a":1}`,
    ];
    for (const text of cases) {
      const t = performance.now();
      expect(duplicateTopLevelKey(text)).toBe(text.startsWith('{"k0') ? "k0" : "a");
      expect(performance.now() - t).toBeLessThan(500);
    }
  });
});

describe("a body with a duplicate top-level key", () => {
  let k: CreatedKey;
  beforeAll(async () => {
    k = await createKey();
  });

  const twice = '{"model":"glm-4-flash-250414","messages":[{"role":"user","content":"hi"}],"model":"glm-4-plus"}';

  it("is refused with 400 1214 naming the field on chat, nothing sent upstream", async () => {
    const before = (await simStats()).total;
    const res = await chat(k.key, twice);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: "1214", message: expect.stringContaining('"model"') } });
    expect((await simStats()).total).toBe(before);
  });

  it("is refused on every other JSON route too", async () => {
    const json = (path: string, body: string, auth = `Bearer ${k.key}`, method = "POST") =>
      gw(path, { method, headers: { authorization: auth, "content-type": "application/json" }, body });
    const routes = [
      await json("/api/paas/v4/chat/completions", twice),
      await json("/v1/async/chat/completions", twice),
      await json("/v1/summarize", '{"text":"a","text":"b"}'),
      await json("/v1/async/summarize", '{"text":"a","style":"tldr","style":"bullets"}'),
      await json("/v1/tokens", '{"ttl_seconds":60,"ttl_seconds":86400}'),
      await json("/admin/keys", '{"name":"x","tier":"V0","tier":"V3"}', "Bearer test-admin-token"),
      await json(
        "/admin/catalog/models/glm-4-plus",
        '{"status":"active","status":"disabled"}',
        "Bearer test-admin-token",
        "PATCH",
      ),
    ];
    for (const res of routes) {
      expect(res.status, res.url).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("1214");
    }
    // The admin PATCH above did not go through.
    const model = (await (await admin("GET", "/catalog")).json()) as { models: { id: string; status: string }[] };
    expect(model.models.find((m) => m.id === "glm-4-plus")?.status).toBe("active");
  });
});
