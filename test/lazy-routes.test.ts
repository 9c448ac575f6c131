// Routes build their schemas on first use, not when the isolate starts (issue 16): registering or mounting a
// route builds nothing, its first request builds once what validates it and never its responses (which only the
// OpenAPI document reads), and the document (generated at build time) is made from those same route definitions.
import { describe, expect, it } from "vitest";
import { errorResponse, GatewayError } from "../src/errors.ts";
import { openApiDocument } from "../src/http/openapi-document.ts";
import { createRoute, newRouter } from "../src/http/openapi.ts";
import * as z from "../src/shared/zod.ts";
import { mountDocs } from "../src/routes/docs.ts";

function app() {
  const built: string[] = [];
  const router = newRouter();
  router.openapi(
    createRoute({ method: "post", path: "/things/{id}" }, () => {
      built.push("things");
      return {
        tags: ["things"],
        request: {
          params: z.object({ id: z.string().regex(/^\d+$/) }),
          body: {
            required: true,
            content: { "application/json": { schema: z.object({ n: z.number().max(3) }).openapi("Thing") } },
          },
        },
        responses: () => {
          built.push("things responses");
          return {
            200: { description: "ok", content: { "application/json": { schema: z.object({ n: z.number() }) } } },
          };
        },
      };
    }),
    (c) => c.json({ n: c.req.valid("json").n }, 200),
  );
  const top = newRouter();
  top.route("/v1", router);
  top.route("/alias", router);
  mountDocs(top);
  top.onError((err) =>
    err instanceof GatewayError
      ? errorResponse(err.status, err.code, err.message)
      : errorResponse(500, "500", String(err)),
  );
  return { top, built };
}

const post = (path: string, body: unknown) =>
  new Request(`http://gateway.test${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

describe("lazily built routes", () => {
  it("build nothing when registered and mounted", () => {
    expect(app().built).toEqual([]);
  });

  it("build their request schemas on the first request, once for every mount, and validate as before", async () => {
    const { top, built } = app();
    expect((await top.request(post("/v1/things/7", { n: 2 }))).status).toBe(200);
    expect(built).toEqual(["things"]);
    const bad = await top.request(post("/alias/things/7", { n: 9 }));
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      error: { code: "1214", message: expect.stringContaining("invalid field n") },
    });
    expect((await top.request(post("/v1/things/x", { n: 1 }))).status).toBe(400);
    expect((await top.request(post("/v1/things/7", {}))).status).toBe(400);
    // The responses were never built: no request reads them.
    expect(built).toEqual(["things"]);
  });

  it("are documented from the instances that validate, at every mount, responses included", async () => {
    const { top, built } = app();
    const doc = openApiDocument(top.docEntries) as {
      paths: Record<string, { post: { responses: Record<string, { content: Record<string, { schema: unknown }> }> } }>;
      components: { schemas: Record<string, unknown> };
    };
    expect(Object.keys(doc.paths)).toEqual(["/v1/things/{id}", "/alias/things/{id}"]);
    expect(doc.components.schemas["Thing"]).toMatchObject({
      type: "object",
      properties: { n: { type: "number", maximum: 3 } },
    });
    expect(doc.paths["/alias/things/{id}"]!.post.responses["200"]!.content["application/json"]!.schema).toMatchObject({
      type: "object",
      properties: { n: { type: "number" } },
    });
    expect(built).toEqual(["things", "things responses"]);
    expect((await top.request(post("/v1/things/7", { n: 1 }))).status).toBe(200);
    expect(built).toEqual(["things", "things responses"]);
  });
});
