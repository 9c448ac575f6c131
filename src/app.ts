// Wires middleware and routes. The client API is mounted twice — at /v1 (OpenAI-style base URL) and at
// /api/paas/v4 (GLM's own) — so every SDK works by changing only its base URL.
import { HTTPException } from "hono/http-exception";
import { bodyLimit } from "hono/body-limit";
import { methodNotAllowed } from "hono/method-not-allowed";
import { Codes, GatewayError, errorResponse } from "./errors.ts";
import { log } from "./shared/log.ts";
import { uniqueJsonKeys } from "./http/json-keys.ts";
import { adminAuth, clientCors, clientCredential, requestContext, requireJson } from "./http/middleware.ts";
import { createRoute, newRouter, type Router } from "./http/openapi.ts";
import * as z from "./shared/zod.ts";
import { adminCatalog } from "./routes/admin-catalog.ts";
import { adminKeys } from "./routes/admin-keys.ts";
import { adminLoad } from "./routes/admin-load.ts";
import { adminUpstreams } from "./routes/admin-upstreams.ts";
import { adminUsage } from "./routes/admin-usage.ts";
import { asyncJobs } from "./routes/async.ts";
import { chat } from "./routes/chat.ts";
import { mountDocs } from "./routes/docs.ts";
import { models } from "./routes/models.ts";
import { summarize } from "./routes/summarize.ts";
import { tokens } from "./routes/tokens.ts";
import { usage } from "./routes/usage.ts";

/** Largest request body accepted (a 128K-token prompt is well under this). */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;

function onError(err: unknown, requestId: string): Response {
  if (err instanceof GatewayError) return errorResponse(err.status, err.code, err.message, err.headers);
  if (err instanceof HTTPException) {
    const status = err.status;
    // Hono's validator throws this for a body that is not valid JSON.
    const message = /JSON/i.test(err.message) ? "request body is not valid JSON" : err.message || "bad request";
    return errorResponse(status, status === 400 ? Codes.badParams : String(status), message);
  }
  log({
    level: "error",
    msg: "unhandled error",
    request_id: requestId,
    error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
  });
  return errorResponse(500, Codes.internal, `internal gateway error (request ${requestId})`);
}

function clientApi(): Router {
  const api = newRouter();
  api.use("*", clientCors());
  api.route("/", models);
  api.use("/chat/*", requireJson(), clientCredential(), uniqueJsonKeys());
  // Browser tokens are for chat and summarize from a page: whatever acts with the key's full authority or
  // shows the whole key's data is refused to them (403), so only the key's holder can, for example, have a
  // webhook signed with the key's secret.
  api.use("/usage", clientCredential({ refuseBrowserTokens: "read the key's usage" }));
  api.use("/tokens", clientCredential({ refuseBrowserTokens: "mint tokens" }), uniqueJsonKeys());
  api.route("/", chat);
  api.route("/", usage);
  api.use("/summarize", clientCredential(), uniqueJsonKeys());
  api.route("/", summarize);
  api.use("/async/*", requireJson(), clientCredential({ refuseBrowserTokens: "submit async jobs" }), uniqueJsonKeys());
  api.use("/async-result/*", clientCredential({ refuseBrowserTokens: "read async job results" }));
  api.route("/", asyncJobs);
  api.route("/", tokens);
  return api;
}

export function createApp(): Router {
  const app = newRouter();
  app.use("*", requestContext());
  // A wrong method on a served path gets 405 with Allow instead of 404. Hono builds its index of the app's
  // routes on the first unmatched request, not when the isolate starts.
  app.use(
    "*",
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, methods) =>
        errorResponse(405, "405", `method ${c.req.method} is not allowed on ${c.req.path}; use ${methods.join(", ")}`, {
          allow: methods.join(", "),
        }),
    }),
  );
  app.use(
    "*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new GatewayError(413, Codes.badParams, `request body is larger than ${MAX_BODY_BYTES} bytes`);
      },
    }),
  );

  app.openapi(
    createRoute({ method: "get", path: "/healthz" }, () => ({
      tags: ["health"],
      summary: "Liveness (no auth)",
      responses: () => ({
        200: {
          description: "The Worker is up",
          content: { "application/json": { schema: z.object({ ok: z.literal(true) }) } },
        },
      }),
    })),
    (c) => c.json({ ok: true as const }, 200),
  );

  const admin = newRouter();
  admin.use("*", adminAuth());
  admin.use("*", requireJson({ optional: true }));
  admin.use("*", uniqueJsonKeys());
  admin.route("/", adminKeys);
  admin.route("/", adminCatalog);
  admin.route("/", adminUsage);
  admin.route("/", adminLoad);
  admin.route("/", adminUpstreams);
  app.route("/admin", admin);

  const api = clientApi();
  app.route("/v1", api);
  app.route("/api/paas/v4", api);

  app.component("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    description: "A gateway key `<id>.<secret>`, a GLM JWT signed with it, or a browser token from POST /v1/tokens",
  });
  app.component("securitySchemes", "adminAuth", { type: "http", scheme: "bearer", description: "ADMIN_TOKEN" });

  // After every router: the document (generated at build time from docEntries) lists all their routes.
  mountDocs(app);

  app.notFound((c) => errorResponse(404, Codes.notFound, `no route for ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => onError(err, c.get("requestId") ?? "unknown"));
  return app;
}
