import { describe, expect, it } from "vitest";
import { gw } from "./helpers.ts";

describe("basics", () => {
  it("answers /healthz without auth", async () => {
    const res = await gw("/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    expect(res.headers.get("x-request-id")).toMatch(/.+/);
  });

  it("gives unknown routes a GLM-style JSON 404", async () => {
    const res = await gw("/nope");
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { code: "404", message: "no route for GET /nope" } });
  });

  it("echoes a caller's x-request-id", async () => {
    const res = await gw("/healthz", { headers: { "x-request-id": "abc-123" } });
    expect(res.headers.get("x-request-id")).toBe("abc-123");
  });
});
