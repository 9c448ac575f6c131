// Admin API for the model catalog: read, replace (validated) and patch one model, e.g. a price change.
// Writes go to KV; this isolate sees them at once, others within the cache refresh (see catalog/store.ts).
import * as z from "../shared/zod.ts";
import { getCatalog, putCatalog } from "../catalog/store.ts";
import { catalogSchema, modelPatchSchema, type Catalog, type ModelEntry } from "../catalog/schema.ts";
import { Codes, GatewayError } from "../errors.ts";
import { adminSecurity, commonErrors, createRoute, newRouter, notFound } from "../http/openapi.ts";

const json = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

export const adminCatalog = newRouter();

adminCatalog.openapi(
  createRoute({ method: "get", path: "/catalog" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "The model catalog",
    responses: () => ({ 200: json(catalogSchema(), "The catalog in effect"), ...commonErrors() }),
  })),
  async (c) => c.json((await getCatalog(c.env, c.executionCtx)).catalog, 200),
);

adminCatalog.openapi(
  createRoute({ method: "put", path: "/catalog" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "Replace the catalog",
    request: { body: { required: true, content: { "application/json": { schema: catalogSchema() } } } },
    responses: () => ({ 200: json(catalogSchema(), "The stored catalog"), ...commonErrors() }),
  })),
  async (c) => {
    const body = c.req.valid("json");
    const current = (await getCatalog(c.env, c.executionCtx)).catalog;
    const next: Catalog = {
      ...body,
      version: Math.max(body.version, current.version + 1),
      updated_at: new Date().toISOString(),
    };
    return c.json((await putCatalog(c.env, next)).catalog, 200);
  },
);

adminCatalog.openapi(
  createRoute({ method: "patch", path: "/catalog/models/{id}" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "Change one model (price, limits, status…)",
    request: {
      params: z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "glm-4-plus" }) }),
      body: { required: true, content: { "application/json": { schema: modelPatchSchema() } } },
    },
    responses: () => ({ 200: json(catalogSchema(), "The stored catalog"), ...commonErrors(), ...notFound() }),
  })),
  async (c) => {
    const id = c.req.valid("param").id;
    const patch = c.req.valid("json");
    const current = (await getCatalog(c.env, c.executionCtx)).catalog;
    const model = current.models.find((m) => m.id === id);
    if (!model) throw new GatewayError(404, Codes.unknownModel, `model does not exist: ${id}`);
    const merged: ModelEntry = {
      ...model,
      ...patch,
      pricing: { ...model.pricing, ...patch.pricing },
      concurrency: { ...model.concurrency, ...patch.concurrency },
      capabilities: { ...model.capabilities, ...patch.capabilities },
    };
    const next = catalogSchema().safeParse({
      ...current,
      version: current.version + 1,
      updated_at: new Date().toISOString(),
      models: current.models.map((m) => (m.id === id ? merged : m)),
    });
    if (!next.success)
      throw new GatewayError(
        400,
        Codes.illegalField,
        `invalid catalog after patch: ${next.error.issues[0]?.message ?? ""}`,
      );
    return c.json((await putCatalog(c.env, next.data)).catalog, 200);
  },
);
