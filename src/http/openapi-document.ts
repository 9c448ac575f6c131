// The OpenAPI 3.1 document served at /openapi.json, generated at build time (scripts/openapi.ts writes it to
// public/openapi.json before the Worker is built, run or tested) from the same route definitions and zod schemas
// that validate requests (one source of truth), plus what middleware adds to every route (x-request-id, a browser
// token's 403). Never imported by the Worker: zod-to-openapi and this file stay out of its bundle.
import { OpenAPIRegistry, OpenApiGeneratorV31, extendZodWithOpenApi } from "@asteasolutions/zod-to-openapi";
import pkg from "../../package.json" with { type: "json" };
import { TOKEN_TTL_DEFAULT_S, TOKEN_TTL_MAX_S } from "../auth/browser-token.ts";
import type { DocEntry } from "./openapi.ts";
import * as z from "../shared/zod.ts";

// zod-to-openapi's `.openapi()` records the metadata the document is made of; the Worker's (see src/shared/zod.ts) does
// not. Schemas are built lazily, on a route's first use, so every schema built after this import carries its metadata.
const proto = z.ZodType.prototype as { openapi?: unknown };
if (proto.openapi === z.openapiInWorker) delete proto.openapi;
extendZodWithOpenApi({ ZodType: z.ZodType } as Parameters<typeof extendZodWithOpenApi>[0]);

type Doc = ReturnType<OpenApiGeneratorV31["generateDocument"]>;
type Json = Record<string, unknown>;

const GLM_PREFIX = "/api/paas/v4/";
const GLM_TAG = "GLM base URL";

const DESCRIPTION = `
An edge gateway for Zhipu's GLM-4 chat models. It speaks GLM's API (and works as an OpenAI-compatible base URL),
keeps the upstream key, enforces per-key concurrency, budgets and usage, and streams answers straight through.

**Base URLs.** The client API is served at \`/v1\` (OpenAI-style) and at \`/api/paas/v4\` (GLM's own path, listed
under "${GLM_TAG}"): point any GLM or OpenAI SDK at either by changing only its base URL.

**Authentication.** \`Authorization: Bearer <key>\` with a gateway key \`<id>.<secret>\`; a GLM-style JWT signed with
the key's secret (with or without "Bearer"); or a browser token. Admin routes take \`Bearer <ADMIN_TOKEN>\`.

**Browser tokens.** Never put a key in a web page. Your back end calls \`POST /v1/tokens\` with its key and hands the
token to the browser: it lives ${TOKEN_TTL_DEFAULT_S / 60} minutes by default (\`ttl_seconds\`, at most \
${TOKEN_TTL_MAX_S / 3600} hours), can be
limited to some models and to one origin, counts against the key's limits and usage, and dies with the key.

**Streaming.** With \`"stream": true\` the answer is GLM's server-sent events: \`data: <chunk>\` lines, the last chunk
carrying \`usage\`, then \`data: [DONE]\`. A stream that fails after it started ends with \`data: {"error":{...}}\`.

**Errors.** Always \`{"error":{"code":"<GLM code>","message":"..."}}\` with the HTTP status. A 429 means a limit:
code 1302 too many requests in flight for this key and model (retry when one finishes; \`retry-after\` says when,
\`x-concurrency-limit\` / \`x-concurrency-in-flight\` show the numbers), 1308 the key's daily budget is used up.
Every response carries \`x-request-id\`; quote it when reporting a problem.
`.trim();

const TAGS = [
  { name: "chat", description: "GLM chat completions, plain or streamed" },
  { name: "summarize", description: "Summaries of long texts, streamed with progress" },
  { name: "models", description: "The model catalog: context, output limit, prices, concurrency (public)" },
  { name: "usage", description: "Your key's usage and cost" },
  { name: "tokens", description: "Short-lived browser tokens minted by your back end" },
  { name: "admin", description: "Keys, catalog and usage for operators (ADMIN_TOKEN)" },
  { name: "health", description: "Liveness" },
  { name: GLM_TAG, description: "The client API again under GLM's own path, for SDKs configured with GLM's base URL" },
];

const TOKEN_403 = {
  description:
    "A browser token's restriction refused the request: wrong or missing Origin (1000) or a model outside its list " +
    "(1214)",
  content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
};

function isBearer(op: Json): boolean {
  const security = op["security"];
  return Array.isArray(security) && security.some((s) => typeof s === "object" && s !== null && "bearerAuth" in s);
}

/** Adds what middleware does for every route, which the routes' own schemas do not say. */
function decorate(doc: Doc): Doc {
  const components = (doc.components ??= {});
  components.headers = {
    ...components.headers,
    RequestId: {
      description: "This request's id (yours when you sent a valid x-request-id); quote it in reports",
      schema: { type: "string" },
    },
  };
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const [method, value] of Object.entries(item as Json)) {
      if (!["get", "put", "post", "delete", "patch"].includes(method)) continue;
      const op = value as Json;
      const responses = (op["responses"] ??= {}) as Json;
      if (isBearer(op) && !responses["403"]) responses["403"] = TOKEN_403;
      for (const response of Object.values(responses) as Json[]) {
        const headers = (response["headers"] ??= {}) as Json;
        headers["x-request-id"] ??= { $ref: "#/components/headers/RequestId" };
      }
      if (path.startsWith(GLM_PREFIX)) op["tags"] = [GLM_TAG];
    }
  }
  // Describe the tags we know; keep any other tag a route uses, so none disappears from the reference.
  const used = new Set(
    Object.values(doc.paths ?? {}).flatMap((item) =>
      Object.values(item as Json).flatMap((op) => ((op as Json)["tags"] as string[] | undefined) ?? []),
    ),
  );
  const known = new Set(TAGS.map((t) => t.name));
  const others = [...used]
    .filter((t) => !known.has(t))
    .sort()
    .map((name) => ({ name }));
  return { ...doc, tags: [...TAGS.slice(0, -1), ...others, TAGS.at(-1)!] };
}

/** The document for these routes and components, as @hono/zod-openapi's OpenAPIHono generated it. */
function generate(entries: readonly DocEntry[]): Doc {
  const registry = new OpenAPIRegistry();
  for (const entry of entries) {
    if (entry.type === "route") registry.registerPath({ ...entry.route(), path: entry.path });
    else registry.registerComponent(...entry.args);
  }
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: "3.1.0",
    info: { title: "glm-edge", version: pkg.version, description: DESCRIPTION },
  });
}

/** The document for an app's routes and components (Router.docEntries), without `servers` (added per request). */
export function openApiDocument(entries: readonly DocEntry[]): Doc {
  return decorate(generate(entries));
}
