// Routers validate each request with its route's zod schemas and record the route (docEntries), so that
// /openapi.json is generated from those same definitions (one source of truth) — at build time, by
// src/http/openapi-document.ts: nothing that only the document needs is in the Worker. Validation failures
// become GLM-style 400s through the shared hook.
//
// A route: `router.openapi(createRoute({ method, path }, () => ({ request, responses: () => ({ … }), … })), handler)`
// on a `newRouter()`, with schemas from `import * as z from "../shared/zod.ts"`. The request checks are those of
// @hono/zod-openapi's OpenAPIHono (whose types this keeps, for `c.req.valid(…)`), without its document registry in the
// Worker.
import { zValidator } from "@hono/zod-validator";
import type { OpenAPIHono, RouteConfig } from "@hono/zod-openapi";
import type { OpenAPIRegistry } from "@asteasolutions/zod-to-openapi";
import { Hono, type Context, type Env, type MiddlewareHandler, type Schema } from "hono";
import { HTTPException } from "hono/http-exception";
import { mergePath } from "hono/utils/url";
import { zodToGlmError } from "./zod-error.ts";
import { once } from "../lazy.ts";
import type { AppEnv } from "./context.ts";
import * as z from "../shared/zod.ts";

/** What /openapi.json is made of, in the order it was registered: routes (at their full path) and components. */
export type DocEntry =
  | { type: "route"; path: string; route: () => RouteConfig }
  | { type: "component"; args: Parameters<OpenAPIRegistry["registerComponent"]> };

type Hook = NonNullable<Parameters<typeof zValidator>[2]>;

/** Every schema failure becomes GLM's 400 (1213 missing field, 1214 illegal field). */
const glmHook: Hook = (result) => {
  if (!result.success) throw zodToGlmError(result.error as z.ZodError);
};

const isZod = (x: unknown): x is z.ZodType =>
  typeof x === "object" && x !== null && typeof (x as z.ZodType).safeParseAsync === "function";
const isJson = (type: string) => /^application\/([a-z-.]+\+)?json/i.test(type);
const isForm = (type: string) => /^(multipart\/form-data|application\/x-www-form-urlencoded)/i.test(type);
const JSON_REQUEST = /^application\/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9-]+=([^;]+))*$/i;
const MULTIPART_REQUEST = /^multipart\/form-data(;\s?boundary=[a-zA-Z0-9'"()+_,\-./:=?]+)?$/i;
const URLENCODED_REQUEST = /^application\/x-www-form-urlencoded(;\s*[a-zA-Z0-9-]+=([^;]+))*$/i;

function matchesMediaType(contentType: string, mediaType: string): boolean {
  if (mediaType === "*/*") return true;
  if (isJson(mediaType)) return JSON_REQUEST.test(contentType);
  if (isForm(mediaType)) return MULTIPART_REQUEST.test(contentType) || URLENCODED_REQUEST.test(contentType);
  const essence = contentType.split(";")[0]!.trim().toLowerCase();
  if (mediaType.endsWith("/*")) return essence.startsWith(mediaType.slice(0, -1).toLowerCase());
  return essence === mediaType.toLowerCase();
}

async function hasRequestBody(c: Context): Promise<boolean> {
  const raw = c.req.raw;
  if (raw.body === null) return false;
  if (raw.bodyUsed) return (await c.req.arrayBuffer()).byteLength > 0;
  const body = raw.clone().body;
  if (body === null) return false;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return false;
      if (value.byteLength > 0) return true;
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}

/** The request checks of a route, in @hono/zod-openapi's order: query, path, headers, cookies, then the body. */
function validators(request: RouteConfig["request"], hook: Hook): MiddlewareHandler[] {
  const list: MiddlewareHandler[] = [];
  if (request?.query) list.push(zValidator("query", request.query, hook));
  if (request?.params) list.push(zValidator("param", request.params, hook));
  if (request?.headers) list.push(zValidator("header", request.headers as z.ZodObject, hook));
  if (request?.cookies) list.push(zValidator("cookie", request.cookies, hook));
  const content = request?.body?.content;
  if (!content) return list;
  const declared = Object.keys(content);
  const schemaOf = (type: string): unknown => (content[type] as { schema?: unknown } | undefined)?.schema;
  if (declared.some((type) => isZod(schemaOf(type)) && (isJson(type) || isForm(type)))) {
    list.push(async (c, next) => {
      const type = c.req.header("content-type");
      if (type ? !declared.some((d) => matchesMediaType(type, d)) : await hasRequestBody(c)) {
        throw new HTTPException(415, { message: "Unsupported Media Type" });
      }
      await next();
    });
  }
  for (const type of declared) {
    const schema = schemaOf(type);
    if (!isZod(schema)) continue;
    for (const [target, matches] of [
      ["json", isJson],
      ["form", isForm],
    ] as const) {
      if (!matches(type)) continue;
      const validate = zValidator(target, schema, hook);
      if (request.body?.required) {
        list.push(validate);
        continue;
      }
      // An optional body: validated when one of this kind is sent, otherwise the handler sees {}.
      list.push(async (c, next) => {
        const sent = c.req.header("content-type");
        if (sent && matches(sent)) return validate(c, next);
        c.req.addValidatedData(target, {});
        await next();
      });
    }
  }
  return list;
}

/** Runs middleware in sequence as one, the way Hono composes a route's handlers. */
function inSequence(list: MiddlewareHandler[]): MiddlewareHandler {
  return (c, next) => {
    const run = async (i: number): Promise<void> => {
      if (i === list.length) return next();
      const res = await list[i]!(c, () => run(i + 1));
      if (res && !c.finalized) c.res = res;
    };
    return run(0);
  };
}

/** Hono's `/keys/:id` is OpenAPI's `/keys/{id}`, and back. */
const toHonoPath = (path: string) => path.replaceAll(/\/{(.+?)}/g, "/:$1");
const toOpenApiPath = (path: string) => path.replaceAll(/:([^/]+)/g, "{$1}");

/** What must be known when a route is registered: how it is reached, and the middleware that runs first. */
type RouteHead = Pick<RouteConfig, "method" | "path" | "middleware" | "hide">;

/** A route's definition after its head, as createRoute's function returns it: the responses are a function again. */
type RouteBody = Omit<RouteConfig, keyof RouteHead | "responses"> & { responses: () => RouteConfig["responses"] };

/** The definition R describes once its responses are built: the type handlers are checked against. */
type Built<B extends RouteBody> = Omit<B, "responses"> & { responses: ReturnType<B["responses"]> };

/**
 * A route whose request schemas are built on its first request, and its responses only when /openapi.json is
 * generated, never when the isolate starts: see createRoute. R is the whole definition, responses built.
 */
export interface LazyRoute<R> {
  readonly head: RouteHead;
  readonly build: () => RouteHead & RouteBody;
  /** Types only: the definition this stands for. */
  readonly _route?: R;
}

function isLazy<R>(route: LazyRoute<R> | R): route is LazyRoute<R> {
  return typeof (route as Partial<LazyRoute<R>>).build === "function";
}

// The handler and hook types of OpenAPIHono.openapi for a route R (types only: nothing of it is in the bundle).
declare const _typed: OpenAPIHono<AppEnv>;
type Handler<R extends RouteConfig> = Parameters<typeof _typed.openapi<R>>[1];

/** What a router records for the document: its own entries, and routers mounted on it (see Router.route). */
type Recorded = DocEntry | { type: "mount"; path: string; router: Router; count: number };

export class Router extends Hono<AppEnv> {
  readonly #recorded: Recorded[] = [];

  /**
   * This router's routes and components for /openapi.json, mounted routers' included, in registration order.
   * Worked out when asked for (by the document's generator, at build time), never when the app is built.
   */
  get docEntries(): DocEntry[] {
    return this.#entries(this.#recorded.length);
  }

  /** The entries of the first `count` things recorded. */
  #entries(count: number): DocEntry[] {
    return this.#recorded.slice(0, count).flatMap((item) => {
      if (item.type !== "mount") return [item];
      // Like OpenAPIHono: what the mounted router had registered when mounted, at its path under this one.
      const base = toOpenApiPath(item.path);
      return item.router
        .#entries(item.count)
        .map((entry) => (entry.type === "route" ? { ...entry, path: mergePath(base, entry.path) } : entry));
    });
  }

  /**
   * Registers a route: its middleware, then its request checks, then the handler; and records it for the
   * document. A request builds only what validates it (the createRoute body, not its responses), on the route's
   * first request; the responses are built for the document alone.
   */
  openapi<R extends RouteConfig>(route: LazyRoute<R> | R, handler: Handler<R>, hook?: Hook): this {
    const { head, build }: LazyRoute<R> = isLazy(route)
      ? route
      : { head: route, build: () => ({ ...route, responses: () => route.responses }) };
    const spec = once(build);
    // Every mount's entry shares this one function: the document sees the instances that validate, built once.
    const documented = once((): RouteConfig => {
      const { middleware: _m, hide: _h, responses, ...rest } = spec();
      return { ...rest, responses: responses() };
    });
    if (!head.hide) this.#recorded.push({ type: "route", path: head.path, route: documented });
    const checks = once(() => inSequence(validators(spec().request, hook ?? glmHook)));
    const before =
      head.middleware === undefined ? [] : Array.isArray(head.middleware) ? head.middleware : [head.middleware];
    const on = this.on as (methods: string[], paths: string[], ...handlers: MiddlewareHandler[]) => unknown;
    on.call(
      this,
      [head.method],
      [toHonoPath(head.path)],
      ...(before as MiddlewareHandler[]),
      (c, next) => checks()(c, next),
      handler as MiddlewareHandler,
    );
    return this;
  }

  /** Adds a component (a security scheme…) to the document. */
  component(...args: Parameters<OpenAPIRegistry["registerComponent"]>): this {
    this.#recorded.push({ type: "component", args });
    return this;
  }

  override route<SubPath extends string, SubEnv extends Env, SubSchema extends Schema, SubBasePath extends string>(
    path: SubPath,
    app: Hono<SubEnv, SubSchema, SubBasePath>,
  ) {
    if (app instanceof Router) this.#recorded.push({ type: "mount", path, router: app, count: app.#recorded.length });
    return super.route(path, app);
  }
}

export function newRouter(): Router {
  return new Router();
}

/**
 * A route's definition. Two forms:
 *
 *   createRoute({ method, path, middleware?, request?, responses, … })        as @hono/zod-openapi's createRoute
 *   createRoute({ method, path, middleware? }, () => ({ request?, responses: () => ({ … }), … }))
 *
 * The second builds the request schemas on the route's first request instead of when the module loads, and the
 * responses (which the Worker never checks) only for the document: use it, so that an isolate's startup builds no
 * schema at all and a first request no more than it validates with. Schemas shared between routes are `once(…)`
 * functions.
 */
export function createRoute<P extends string, R extends Omit<RouteConfig, "path"> & { path: P }>(config: R): R;
export function createRoute<const H extends RouteHead, B extends RouteBody>(
  head: H,
  body: () => B,
): LazyRoute<H & Built<B>>;
export function createRoute(
  head: RouteConfig | RouteHead,
  body?: () => RouteBody,
): RouteConfig | LazyRoute<RouteConfig> {
  return body ? { head, build: () => ({ ...head, ...body() }) } : (head as RouteConfig);
}

// Response schemas only /openapi.json reads: built when it is generated, never for a request.
export const errorSchema = once(() =>
  z
    .object({
      error: z.object({
        code: z.string().openapi({ example: "1214" }),
        message: z.string().openapi({ example: "invalid field temperature: Too big: expected number to be <=1" }),
      }),
    })
    .openapi("Error"),
);

const err = (description: string) => ({ description, content: { "application/json": { schema: errorSchema() } } });

/** Error responses shared by authenticated JSON routes. */
export const commonErrors = once(
  () =>
    ({
      400: err("Invalid request (GLM codes 1210-1214)"),
      401: err("Missing or invalid credentials (GLM codes 1000-1004)"),
      413: err("Body too large"),
      415: err("Body is not application/json"),
      503: err("Gateway misconfigured or limiter unavailable"),
    }) as const,
);

export const limitErrors = once(
  () =>
    ({
      429: {
        description: "Concurrency limit (1302) or daily budget (1308) reached; see Retry-After",
        headers: z.object({ "retry-after": z.string().openapi({ example: "1" }) }),
        content: { "application/json": { schema: errorSchema() } },
      },
      502: err("Upstream unreachable (1234)"),
      504: err("Upstream timed out (1234)"),
    }) as const,
);

export const notFound = once(() => ({ 404: err("Not found") }) as const);

export const bearerSecurity = [{ bearerAuth: [] }];
export const adminSecurity = [{ adminAuth: [] }];
