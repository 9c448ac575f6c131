// The gateway as `npm run bench:scale` runs it: the same Worker and Durable Object classes under the same
// wrangler.toml, with every Durable Object call counted where it is made — each namespace binding handed to
// the Worker and to the objects themselves is wrapped, so a call through any stub is counted under its
// class, object and method. GET /admin/_bench/counts (admin token) answers the counts. Bench-only: never
// deployed, and the gateway itself has no such route.
import gateway from "../../src/index.ts";
import {
  JobIndex as BaseJobIndex,
  JobObject as BaseJobObject,
  KeyObject as BaseKeyObject,
  UpstreamGuard as BaseUpstreamGuard,
  UsageRollup as BaseUsageRollup,
} from "../../src/index.ts";

type Counts = Record<string, Record<string, Record<string, number>>>;

/** class → object name → method → calls. Module state: the Worker and its objects share one isolate here. */
const counts: Counts = {};
const BINDINGS: Record<string, string> = {
  KEYS: "KeyObject",
  GUARD: "UpstreamGuard",
  JOBS: "JobObject",
  JOB_INDEX: "JobIndex",
  USAGE_ROLLUP: "UsageRollup",
};
/** Properties of a stub that are not calls. */
const NOT_CALLS = new Set(["then", "id", "name", "toJSON", "constructor"]);

function bump(cls: string, object: string, method: string): void {
  const byObject = (counts[cls] ??= {});
  const byMethod = (byObject[object] ??= {});
  byMethod[method] = (byMethod[method] ?? 0) + 1;
}

function countingStub<T extends object>(stub: T, cls: string, object: string): T {
  return new Proxy(stub, {
    get(target, prop) {
      const v = Reflect.get(target, prop) as unknown;
      if (typeof prop !== "string" || NOT_CALLS.has(prop) || typeof v !== "function") return v;
      return (...args: unknown[]) => {
        bump(cls, object, prop);
        // Called on the stub itself: a stub's method is an RPC stub too, whose "apply" would be a remote call.
        return (target as Record<string, (...a: unknown[]) => unknown>)[prop]!(...args);
      };
    },
  });
}

function countingNamespace(ns: DurableObjectNamespace, cls: string): DurableObjectNamespace {
  return new Proxy(ns, {
    get(target, prop) {
      const v = Reflect.get(target, prop) as unknown;
      if (typeof v !== "function") return v;
      if (prop === "get") {
        return (id: DurableObjectId, opts?: unknown) =>
          countingStub(target.get(id, opts as never), cls, id.name ?? id.toString());
      }
      if (prop === "getByName")
        return (name: string, opts?: unknown) =>
          countingStub(
            (target as unknown as { getByName: (n: string, o?: unknown) => object }).getByName(name, opts),
            cls,
            name,
          );
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

const wrapped = new WeakMap<Env, Env>();

function counting(env: Env): Env {
  let w = wrapped.get(env);
  if (!w) {
    const over: Record<string, unknown> = {};
    for (const [binding, cls] of Object.entries(BINDINGS)) {
      const ns = (env as unknown as Record<string, DurableObjectNamespace | undefined>)[binding];
      if (ns) over[binding] = countingNamespace(ns, cls);
    }
    w = new Proxy(env, {
      get: (target, prop) => (typeof prop === "string" && prop in over ? over[prop] : Reflect.get(target, prop)),
    });
    wrapped.set(env, w);
  }
  return w;
}

/** The class with its env's namespace bindings counted (the calls its objects make to other objects). */
function counted<T extends new (ctx: DurableObjectState, env: Env) => object>(Base: T): T {
  const B: new (ctx: DurableObjectState, env: Env) => object = Base;
  return class extends B {
    constructor(ctx: DurableObjectState, env: Env) {
      super(ctx, counting(env));
    }
  } as unknown as T;
}

export const KeyObject = counted(BaseKeyObject);
export const UpstreamGuard = counted(BaseUpstreamGuard);
export const JobObject = counted(BaseJobObject);
export const JobIndex = counted(BaseJobIndex);
export const UsageRollup = counted(BaseUsageRollup);

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/admin/_bench/counts") {
      if (!env.ADMIN_TOKEN || request.headers.get("authorization") !== `Bearer ${env.ADMIN_TOKEN}`)
        return new Response("unauthorized", { status: 401 });
      if (request.method === "DELETE") for (const k of Object.keys(counts)) delete counts[k];
      return Response.json(counts);
    }
    return gateway.fetch(request, counting(env), ctx);
  },
  queue: (batch: MessageBatch, env: Env, ctx: ExecutionContext) => gateway.queue(batch as never, counting(env), ctx),
} satisfies ExportedHandler<Env>;
