// /openapi.json is the document generated at build time (public/openapi.json, read through the ASSETS binding)
// with `servers` added per request; without that asset it is a clear 503, never a 500 or a stale document.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { gw } from "./helpers.ts";

/** The Worker's env with ASSETS answering /openapi.json from `serve` (undefined: not found). */
function withAssets(serve: () => string | undefined): { env: Env; reads: () => number } {
  let reads = 0;
  const ASSETS = {
    fetch: (input: RequestInfo | URL) => {
      reads++;
      expect(new URL(input instanceof Request ? input.url : input).pathname).toBe("/openapi.json");
      const body = serve();
      return Promise.resolve(
        body === undefined
          ? new Response("Not Found", { status: 404, headers: { "content-type": "text/plain" } })
          : new Response(body, { headers: { "content-type": "application/json" } }),
      );
    },
  } as unknown as Fetcher;
  return { env: { ...env, ASSETS }, reads: () => reads };
}

describe("/openapi.json from the generated asset", () => {
  it("is the asset served by the Worker, with this origin as its server", async () => {
    const asset = await (await env.ASSETS.fetch("http://assets.test/openapi.json")).json();
    const res = await gw("/openapi.json");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("public, max-age=300");
    expect(await res.json()).toEqual({
      ...(asset as object),
      servers: [{ url: "http://gateway.test", description: "this gateway" }],
    });
  });

  it("is read once per isolate and completed per request", async () => {
    const fake = withAssets(() => JSON.stringify({ openapi: "3.1.0", paths: {} }));
    const app = createApp();
    for (const origin of ["https://a.example", "https://b.example"]) {
      const res = await app.request(`${origin}/openapi.json`, {}, fake.env);
      expect(await res.json()).toEqual({
        openapi: "3.1.0",
        paths: {},
        servers: [{ url: origin, description: "this gateway" }],
      });
    }
    expect(fake.reads()).toBe(1);
  });

  it("answers 503 naming the missing asset, and serves it once it exists", async () => {
    const asset: { body?: string } = {};
    const fake = withAssets(() => asset.body);
    const app = createApp();
    const res = await app.request("https://gw.example/openapi.json", {}, fake.env);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      error: { code: "500", message: expect.stringContaining("public/openapi.json is missing") },
    });
    asset.body = JSON.stringify({ openapi: "3.1.0" });
    const later = await app.request("https://gw.example/openapi.json", {}, fake.env);
    expect(later.status).toBe(200);
    expect(fake.reads()).toBe(2);
  });
});
