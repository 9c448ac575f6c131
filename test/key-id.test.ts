// Self-authenticating key ids (src/auth/key-id.ts): a new id verifies, any change to it does not, and the
// tag depends on the server's secret.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { hasValidTag, mayBeKey, newKeyId } from "../src/auth/key-id.ts";

describe("key ids", () => {
  it("are 32 hex characters whose tag verifies under the server secret", async () => {
    const id = await newKeyId(env);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(await hasValidTag(env, id)).toBe(true);
  });

  it("refuse any other id: a flipped character, a made-up id, another secret's id", async () => {
    const id = await newKeyId(env);
    for (const i of [0, 15, 16, 31]) {
      const flipped = id.slice(0, i) + (id[i] === "0" ? "1" : "0") + id.slice(i + 1);
      expect(await hasValidTag(env, flipped), `position ${i}`).toBe(false);
    }
    expect(await hasValidTag(env, "0123456789abcdef0123456789abcdef")).toBe(false);
    const other = await newKeyId({ ...env, KEY_ENCRYPTION_SECRET: "another-deployment" } as Env);
    expect(await hasValidTag(env, other)).toBe(false);
  });

  it("let a key from before tags through only when the key index lists it", async () => {
    const legacy = "0123456789abcdef0123456789abcdef";
    expect(await mayBeKey(env, legacy, async () => true)).toBe(true);
    expect(await mayBeKey(env, legacy, async () => false)).toBe(false);
    let asked = 0;
    expect(await mayBeKey(env, await newKeyId(env), async () => (asked++, false))).toBe(true);
    expect(asked).toBe(0);
  });
});

describe("a made-up key id", () => {
  it("is refused like a wrong secret, without any Durable Object call, and leaves no object behind", async () => {
    const { createExecutionContext, waitOnExecutionContext } = await import("cloudflare:test");
    const { createApp } = await import("../src/app.ts");
    const { createKey } = await import("./helpers.ts");
    const real = await createKey();
    let objectCalls = 0;
    const counting = {
      idFromName: env.KEYS.idFromName.bind(env.KEYS),
      get: (id: DurableObjectId) => {
        objectCalls++;
        return env.KEYS.get(id);
      },
    } as unknown as typeof env.KEYS;
    const send = async (authorization: string) => {
      const ctx = createExecutionContext();
      const res = await createApp().fetch(
        new Request("http://gateway.test/v1/chat/completions", {
          method: "POST",
          headers: { authorization, "content-type": "application/json", "content-length": "80" },
          body: JSON.stringify({ model: "glm-4-flash-250414", messages: [{ role: "user", content: "hi" }] }).padEnd(80),
        }),
        { ...env, KEYS: counting },
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return res;
    };
    const forged = real.id.slice(0, 16) + "0".repeat(16);
    const wrongSecret = await send(`Bearer ${real.id}.wrongwrongwrongwrongwrong`);
    const callsForWrongSecret = objectCalls;
    expect(callsForWrongSecret).toBeGreaterThan(0);
    objectCalls = 0;
    const made = await send(`Bearer ${forged}.AAAAAAAAAAAAAAAAAAAAAAAA`);
    expect(objectCalls).toBe(0);
    expect(made.status).toBe(401);
    // The same answer as a real key with a wrong secret: a made-up id tells nothing.
    expect(await made.json()).toEqual(await wrongSecret.json());
  });
});

describe("a key's object", () => {
  it("creates its tables when the key is created, never when asked about a key that does not exist", async () => {
    const { runInDurableObject } = await import("cloudflare:test");
    const { createKey } = await import("./helpers.ts");
    const tablesOf = (ctx: DurableObjectState) =>
      ctx.storage.sql
        .exec<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'",
        )
        .toArray()
        .map((r) => r.name);
    const stranger = env.KEYS.get(env.KEYS.idFromName(await newKeyId(env)));
    expect(await stranger.info()).toBeNull();
    expect((await stranger.usage("2026-01-01", "2026-01-31")).totals.requests).toBe(0);
    expect(await stranger.authenticate({ kind: "key", keyId: "x".repeat(32), secretHash: "y" })).toMatchObject({
      ok: false,
      status: 401,
    });
    expect(await stranger.release("lease")).toMatchObject({ released: false });
    await runInDurableObject(stranger, (_obj, ctx) => expect(tablesOf(ctx)).toEqual([]));
    const real = await createKey();
    await runInDurableObject(env.KEYS.get(env.KEYS.idFromName(real.id)), (_obj, ctx) =>
      expect(tablesOf(ctx)).toEqual(expect.arrayContaining(["leases", "reservations"])),
    );
  });
});
