// An operator's controls over one key (issue 12): revoking all of its browser tokens at once without revoking
// the key, and pinning where its signed webhooks may go (webhook_urls).
import { describe, expect, it } from "vitest";
import { underAllowedPrefix } from "../src/jobs/ssrf.ts";
import { admin, chat, chatBody, createKey, gw } from "./helpers.ts";

async function mint(key: string): Promise<string> {
  const res = await gw("/v1/tokens", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: "{}",
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { token: string }).token;
}

describe("revoking a key's browser tokens", () => {
  it("refuses every token minted until then; the key and tokens minted later keep working", async () => {
    const k = await createKey({ tier: "V3" });
    const old = await mint(k.key);
    expect((await chat(old, chatBody("hi [[sim: tokens=2]]"))).status).toBe(200);
    const revoked = await admin("POST", `/keys/${k.id}/revoke-tokens`);
    expect(revoked.status).toBe(200);
    expect(((await revoked.json()) as { tokens_valid_after: number }).tokens_valid_after).toBeGreaterThan(0);
    const refused = await chat(old, chatBody("hi"));
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("1004");
    expect((await chat(k.key, chatBody("hi [[sim: tokens=2]]"))).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1_100)); // tokens are dated to the second
    const fresh = await mint(k.key);
    expect((await chat(fresh, chatBody("hi [[sim: tokens=2]]"))).status).toBe(200);
    expect((await admin("POST", "/keys/00000000000000000000000000000000/revoke-tokens")).status).toBe(404);
  });
});

describe("a key's allowed webhook URLs", () => {
  it("refuses a callback_url outside them with 400, and accepts one inside", async () => {
    const k = await createKey({ tier: "V3", webhook_urls: ["http://127.0.0.1:9/hooks"] });
    const submit = (callback_url: string) =>
      gw("/v1/async/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
        body: JSON.stringify({ ...chatBody("hi [[sim: tokens=2]]"), callback_url }),
      });
    for (const bad of ["http://127.0.0.1:9/other", "http://127.0.0.1:9/hooksevil", "http://127.0.0.2:9/hooks/x"]) {
      const res = await submit(bad);
      expect(res.status, bad).toBe(400);
      expect(await res.json()).toMatchObject({
        error: { code: "1214", message: expect.stringContaining("webhook_urls") },
      });
    }
    expect((await submit("http://127.0.0.1:9/hooks/job?x=1")).status).toBe(200);
    // Clearing the list lifts it.
    expect((await admin("PATCH", `/keys/${k.id}`, { webhook_urls: null })).status).toBe(200);
    expect((await submit("http://127.0.0.1:9/other")).status).toBe(200);
    // Set by the admin only, and validated.
    expect((await admin("PATCH", `/keys/${k.id}`, { webhook_urls: ["ftp://x"] })).status).toBe(400);
  });

  it("matches by scheme, host, port and whole path segments", () => {
    const allowed = ["https://hooks.example.com/glm"];
    expect(underAllowedPrefix("https://hooks.example.com/glm", allowed)).toBe(true);
    expect(underAllowedPrefix("https://hooks.example.com/glm/a?b=1", allowed)).toBe(true);
    expect(underAllowedPrefix("https://hooks.example.com/glmx", allowed)).toBe(false);
    expect(underAllowedPrefix("https://hooks.example.com.evil.io/glm", allowed)).toBe(false);
    expect(underAllowedPrefix("http://hooks.example.com/glm", allowed)).toBe(false);
    expect(underAllowedPrefix("https://hooks.example.com:8443/glm", allowed)).toBe(false);
    expect(underAllowedPrefix("not a url", allowed)).toBe(false);
  });
});
