// The limiter floor: the least a gateway that counts requests in flight exactly can do. It is the floor
// (bench/floor/worker.ts) plus one SQLite-backed Durable Object per model holding a table of leases: one RPC
// acquire before the upstream call (a lease is inserted if fewer than LIMIT are held, else 429) and one RPC
// release after the body has been passed on. The body is piped natively (upstream.body → an
// IdentityTransformStream whose readable is the response), so no JavaScript runs per chunk; the release waits
// for the pipe to settle in ctx.waitUntil. Every path releases: a fetch that throws, an upstream error status,
// a body that fails midway, a client that goes away. `npm run bench` holds glm-edge against it. Not part of
// the gateway.
//
// What it leaves out, and an exact production limiter needs: leases that expire when a release never arrives
// (an alarm), renewal of long requests, waiting in line, authentication. So it is a floor, not a design.
import { DurableObject } from "cloudflare:workers";

interface LimiterFloorEnv {
  UPSTREAM: string;
  /** Leases one model's object grants at once. */
  LIMIT: string;
  LIMITER: DurableObjectNamespace<ModelLimiter>;
}

/** One object per model: the table of leases held, counted and changed in one synchronous step each. */
export class ModelLimiter extends DurableObject<LimiterFloorEnv> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: LimiterFloorEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, taken_at INTEGER NOT NULL)");
  }

  /** A lease id, or null when `limit` are already held. No await between count and insert: atomic. */
  acquire(limit: number): string | null {
    const held = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM leases").one().n;
    if (held >= limit) return null;
    const id = crypto.randomUUID();
    this.sql.exec("INSERT INTO leases (id, taken_at) VALUES (?, ?)", id, Date.now());
    return id;
  }

  release(id: string): void {
    this.sql.exec("DELETE FROM leases WHERE id = ?", id);
  }

  /** Leases held now (the benchmark checks it is back to 0 once every request has ended). */
  held(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM leases").one().n;
  }
}

function limiter(env: LimiterFloorEnv, model: string) {
  return env.LIMITER.get(env.LIMITER.idFromName(model));
}

export default {
  async fetch(request: Request, env: LimiterFloorEnv, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    // Answered here so the benchmark can tell the Worker is up, as it does for the gateway.
    if (url.pathname === "/healthz") return new Response("ok");
    if (url.pathname === "/_held") {
      return Response.json({ held: await limiter(env, url.searchParams.get("model") ?? "").held() });
    }
    // A per-model limiter has to know the model, so the body is read (a chat request is a few hundred bytes)
    // and sent on as it came.
    const body = request.method === "POST" ? await request.text() : null;
    let model = "";
    try {
      const parsed: unknown = body ? JSON.parse(body) : null;
      if (parsed && typeof parsed === "object" && "model" in parsed && typeof parsed.model === "string")
        model = parsed.model;
    } catch {
      // not JSON: forwarded under the empty model's object, and the upstream answers it
    }
    const stub = limiter(env, model);
    const lease = await stub.acquire(Number(env.LIMIT));
    if (lease === null)
      return Response.json({ error: { code: "1302", message: "too many requests in flight" } }, { status: 429 });
    const release = () => stub.release(lease).catch(() => undefined);

    let upstream: Response;
    try {
      upstream = await fetch(env.UPSTREAM + url.pathname.replace(/^\/v1/, "") + url.search, {
        method: request.method,
        headers: request.headers,
        body,
        // A client that leaves before the answer's headers cancels the upstream call, and so releases at once.
        signal: request.signal,
      });
    } catch {
      ctx.waitUntil(release());
      return Response.json({ error: { code: "1234", message: "upstream unreachable" } }, { status: 502 });
    }
    if (upstream.body === null) {
      ctx.waitUntil(release());
      return new Response(null, { status: upstream.status, headers: upstream.headers });
    }
    const { readable, writable } = new IdentityTransformStream();
    // Settles when the last byte has been handed on, or when either side fails or goes away.
    ctx.waitUntil(
      upstream.body
        .pipeTo(writable)
        .catch(() => undefined)
        .then(release),
    );
    return new Response(readable, { status: upstream.status, headers: upstream.headers });
  },
} satisfies ExportedHandler<LimiterFloorEnv>;
