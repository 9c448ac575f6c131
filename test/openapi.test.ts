// The API reference: /openapi.json is a valid OpenAPI 3.1 document that lists every route the app really
// serves (so a route added without a schema fails here), with GLM-style errors and the common headers.
import { validate } from "@readme/openapi-parser";
import type { OpenAPIHono } from "@hono/zod-openapi";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { gw } from "./helpers.ts";

type Json = Record<string, unknown>;
interface Doc {
  openapi: string;
  info: { title: string; version: string };
  servers?: { url: string }[];
  paths: Record<string, Record<string, Json>>;
  components: { schemas: Record<string, Json>; securitySchemes: Record<string, Json>; headers?: Record<string, Json> };
}

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];
/** Served by the Worker but not part of the API they describe. */
const NOT_DOCUMENTED = new Set(["/openapi.json", "/docs"]);

async function fetchDoc(): Promise<Doc> {
  const res = await gw("/openapi.json");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("application/json");
  return (await res.json()) as Doc;
}

/** Hono's `/keys/:id` (optionally `:id{regex}`) is OpenAPI's `/keys/{id}`. */
function toOpenApiPath(path: string): string {
  return path.replace(/:(\w+)(\{[^}]*\})?/g, "{$1}");
}

/**
 * Every route of the app that the document does not list, as "METHOD /path". Entries registered with
 * use() (method ALL) are middleware; each must still sit on a documented path or prefix, so an app.all()
 * handler on a path of its own is reported too.
 */
function undocumented(app: OpenAPIHono<never> | ReturnType<typeof createApp>, doc: Doc): string[] {
  const documented = new Set(
    Object.entries(doc.paths).flatMap(([p, item]) =>
      Object.keys(item)
        .filter((m) => METHODS.includes(m))
        .map((m) => `${m.toUpperCase()} ${p}`),
    ),
  );
  const paths = Object.keys(doc.paths);
  const missing = new Set<string>();
  for (const r of app.routes) {
    if (r.method === "OPTIONS" || NOT_DOCUMENTED.has(r.path)) continue;
    const path = toOpenApiPath(r.path);
    if (r.method === "ALL") {
      const prefix = path.replace(/\/?\*$/, "");
      if (prefix !== "" && !paths.some((p) => p === prefix || p.startsWith(prefix + "/"))) missing.add(`ALL ${path}`);
      continue;
    }
    if (!documented.has(`${r.method} ${path}`)) missing.add(`${r.method} ${path}`);
  }
  return [...missing].sort();
}

function operations(doc: Doc): { path: string; method: string; op: Json }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([m]) => METHODS.includes(m))
      .map(([method, op]) => ({ path, method, op })),
  );
}

describe("/openapi.json", () => {
  it("is a valid OpenAPI 3.1 document", async () => {
    const doc = await fetchDoc();
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.info.title).toBe("glm-edge");
    expect(doc.servers?.[0]?.url).toBe("http://gateway.test");
    const result = await validate(structuredClone(doc) as never);
    const errors = result.valid ? [] : result.errors;
    expect(errors, JSON.stringify(errors, null, 1).slice(0, 2000)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(result.warnings).toEqual([]);
  });

  it("the validator does reject a broken document (so the check above can fail)", async () => {
    const broken = structuredClone(await fetchDoc()) as unknown as Json;
    const paths = broken["paths"] as Record<string, Record<string, Json>>;
    delete paths["/v1/chat/completions"]!["post"]!["responses"];
    paths["/v1/usage"]!["get"]!["parameters"] = [{ name: "from", in: "nowhere" }];
    const result = await validate(broken as never);
    expect(result.valid).toBe(false);
  });

  it("lists every route the app serves, with its method", async () => {
    const doc = await fetchDoc();
    const app = createApp();
    expect(undocumented(app, doc)).toEqual([]);
    // Spot checks that the walk really covers the app: both base URLs, admin, tokens, health.
    for (const op of [
      "POST /v1/chat/completions",
      "POST /api/paas/v4/chat/completions",
      "POST /v1/tokens",
      "GET /v1/models/{id}",
      "DELETE /admin/keys/{id}",
      "GET /healthz",
    ]) {
      const [method, path] = op.split(" ") as [string, string];
      expect(doc.paths[path]?.[method.toLowerCase()], op).toBeDefined();
    }
    if (app.routes.some((r) => r.path === "/v1/summarize")) expect(doc.paths["/v1/summarize"]?.["post"]).toBeDefined();
  });

  it("reports a route added without a schema", async () => {
    const doc = await fetchDoc();
    const app = createApp();
    app.get("/v1/rogue", (c) => c.text("no schema"));
    app.all("/v1/anything-goes", (c) => c.text("no schema either"));
    expect(undocumented(app, doc)).toEqual(["ALL /v1/anything-goes", "GET /v1/rogue"]);
  });

  it("declares every error response with the GLM Error schema", async () => {
    const doc = await fetchDoc();
    expect(doc.components.schemas["Error"]).toMatchObject({
      type: "object",
      required: ["error"],
      properties: {
        error: {
          type: "object",
          required: ["code", "message"],
          properties: { code: { type: "string" }, message: { type: "string" } },
        },
      },
    });
    let errors = 0;
    for (const { path, method, op } of operations(doc)) {
      const responses = op["responses"] as Record<string, Json>;
      expect(Object.keys(responses).length, `${method} ${path} has responses`).toBeGreaterThan(0);
      for (const [status, res] of Object.entries(responses)) {
        if (Number(status) < 400) continue;
        errors++;
        const content = res["content"] as Record<string, { schema: Json }> | undefined;
        expect(content?.["application/json"]?.schema, `${method.toUpperCase()} ${path} ${status}`).toEqual({
          $ref: "#/components/schemas/Error",
        });
      }
    }
    expect(errors).toBeGreaterThan(50);
  });

  it("documents the headers: x-request-id everywhere, retry-after on 429, concurrency on chat", async () => {
    const doc = await fetchDoc();
    expect(doc.components.headers?.["RequestId"]).toBeDefined();
    for (const { path, method, op } of operations(doc)) {
      for (const [status, res] of Object.entries(op["responses"] as Record<string, Json>)) {
        const headers = (res["headers"] ?? {}) as Record<string, Json>;
        expect(headers["x-request-id"], `${method} ${path} ${status}`).toBeDefined();
        if (status === "429") expect(headers["retry-after"], `${method} ${path} 429`).toBeDefined();
      }
    }
    const chat200 = (doc.paths["/v1/chat/completions"]!["post"]!["responses"] as Record<string, Json>)["200"]!;
    expect(Object.keys(chat200["headers"] as Json)).toEqual(
      expect.arrayContaining(["x-concurrency-limit", "x-concurrency-in-flight", "x-cost-cny"]),
    );
  });

  it("secures client routes with the bearer scheme and admin routes with the admin scheme", async () => {
    const doc = await fetchDoc();
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(["adminAuth", "bearerAuth"]);
    for (const { path, method, op } of operations(doc)) {
      const schemes = ((op["security"] ?? []) as Json[]).flatMap((s) => Object.keys(s));
      const where = `${method.toUpperCase()} ${path}`;
      if (path.startsWith("/admin/")) expect(schemes, where).toEqual(["adminAuth"]);
      else if (/\/(models|models\/\{id\})$/.test(path) || path === "/healthz") expect(schemes, where).toEqual([]);
      else {
        expect(schemes, where).toEqual(["bearerAuth"]);
        // Any bearer route can meet a browser token's origin or model restriction.
        expect((op["responses"] as Json)["403"], where).toBeDefined();
      }
    }
  });

  it("describes the browser token request from the schema that validates it", async () => {
    const doc = await fetchDoc();
    const body = doc.paths["/v1/tokens"]!["post"]!["requestBody"] as {
      required?: boolean;
      content: Record<string, { schema: Json }>;
    };
    expect(body.required).toBeFalsy();
    expect(body.content["application/json"]!.schema).toEqual({ $ref: "#/components/schemas/TokenRequest" });
    const schema = doc.components.schemas["TokenRequest"] as {
      properties: Record<string, Json>;
      additionalProperties: unknown;
    };
    expect(schema.properties["ttl_seconds"]).toMatchObject({ type: "integer", minimum: 1, maximum: 86_400 });
    expect(schema.additionalProperties).toBe(false);
    expect(Object.keys(doc.paths["/v1/tokens"]!["post"]!["responses"] as Json)).toEqual(
      expect.arrayContaining(["201", "400", "401", "403"]),
    );
  });
});

describe("/docs", () => {
  it("serves the interactive reference page for /openapi.json from this origin only", async () => {
    const res = await gw("/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    const html = await res.text();
    expect(html).toContain('<script src="/vendor/scalar/standalone.js"></script>');
    expect(html).toContain('<script src="/docs.js"></script>');
    expect(html).toContain('href="/openapi.json"');
  });
});
