// The benchmark's probe: a bench-only Worker bound to the gateway's own limiter objects (KeyObject and
// UpstreamGuard, the same classes and SQLite storage) that runs one limiter operation per request, so that
// `npm run bench` can time them from outside against requests that do less, and loops of them inside one
// request for the rate one limiter object sustains. It also loops the catalog lookup, whose CPU the benchmark
// reads from /proc. Not part of the gateway, and never deployed.
//
// It talks to the objects only through their RPC methods (authenticate, acquire, release), the way the
// gateway's Worker does, and imports nothing of the Worker-side limiter code, so it stays valid while that
// code changes: "slot" here is the gateway's admission as of this writing, the key's lease and then the
// upstream guard's, asked one after the other.
import { sha256Hex, randomB64url, randomHex, seal } from "../../src/auth/crypto.ts";
import { parseCredential, type Credential } from "../../src/auth/credentials.ts";
import { getCatalog } from "../../src/catalog/store.ts";
import { resolveModel } from "../../src/catalog/rules.ts";
import { keySealingSecret } from "../../src/config.ts";
import type { KeyRecord } from "../../src/keys/types.ts";
import type { UsageRecord } from "../../src/usage/ledger.ts";

export { KeyObject } from "../../src/keys/key-object.ts";
export { UpstreamGuard } from "../../src/limiter/guard.ts";
export { UsageRollup } from "../../src/usage/rollup.ts";

const MODEL = "glm-4-flash-250414";

const keyStub = (env: Env, keyId: string) => env.KEYS.get(env.KEYS.idFromName(keyId));
const guardStub = (env: Env, model: string) => env.GUARD.get(env.GUARD.idFromName(model));
const rollupStub = (env: Env) => env.USAGE_ROLLUP.get(env.USAGE_ROLLUP.idFromName("usage:bench"));

/** A key's flush to the usage roll-up: one (day, model) row's absolute totals. */
function rollupRow(i: number) {
  return {
    day: "2026-11-30",
    model: MODEL,
    requests: i,
    prompt_tokens: 12 * i,
    completion_tokens: 200 * i,
    cached_tokens: 0,
    cost_nano: 0,
    estimated: 0,
    errors: 0,
    incomplete: 0,
  };
}

/** A key like the admin API makes (tier V3, no own cap), so the limiter checks a real record. */
async function createKey(env: Env): Promise<string> {
  const id = randomHex(16);
  const secret = randomB64url(24);
  const material = keySealingSecret(env);
  const now = new Date().toISOString();
  const record: KeyRecord = {
    id,
    name: "bench-probe",
    tier: "V3",
    max_concurrency: null,
    daily_budget_cny: null,
    daily_token_limit: null,
    fallback_models: null,
    webhook_urls: null,
    created_at: now,
    updated_at: now,
    revoked_at: null,
    secret_hash: await sha256Hex(secret),
    secret_sealed: await seal(material, secret),
    webhook_secret_sealed: await seal(material, "unused"),
  };
  await keyStub(env, id).init(record);
  return `${id}.${secret}`;
}

function usageRecord(): UsageRecord {
  return {
    id: crypto.randomUUID(),
    request_id: "bench",
    ts: Date.now(),
    model: MODEL,
    kind: "chat",
    stream: true,
    status: 200,
    ended: "completed",
    prompt_tokens: 12,
    completion_tokens: 200,
    cached_tokens: 0,
    cost_nano: 0,
    estimated: false,
    account: "default",
    attempt: 1,
  };
}

/**
 * One acquire + release as the gateway does it ("key", "slot", "slot-usage": one call to the key's object
 * each way, the upstream slot coming from the key's block; "slot-usage" releases with a usage record), or a
 * per-request lease at the upstream guard alone ("guard": the second round trip the gateway made before
 * keys held blocks), or two flushes of a key's rows to the usage roll-up ("rollup": two calls, as a pair is).
 */
async function pair(env: Env, ctx: ExecutionContext, cred: Credential, mode: string): Promise<void> {
  if (mode === "rollup") {
    const n = Math.floor(Math.random() * 1000);
    await rollupStub(env).put(cred.keyId, "bench", [rollupRow(n)]);
    await rollupStub(env).put(cred.keyId, "bench", [rollupRow(n + 1)]);
    return;
  }
  const model = resolveModel(await getCatalog(env, ctx), MODEL);
  if (mode === "guard") {
    const guard = guardStub(env, MODEL);
    const got = await guard.acquire(MODEL, model.concurrency.V3);
    if (!got.granted) throw new Error("guard refused");
    await guard.release(got.leaseId);
    return;
  }
  // As the gateway does it: one call to the key's object admits (its block hands out the upstream slot),
  // one call releases (with the usage record in "slot-usage").
  const key = keyStub(env, cred.keyId);
  const got = await key.acquire({
    cred,
    model: MODEL,
    limits: model.concurrency,
    origin: null,
    pools: [{ name: `default:${MODEL}`, account: "default", limit: model.concurrency.V3, weight: 1 }],
  });
  if (!got.ok) throw new Error(`key refused: ${got.message}`);
  await key.release(got.leaseId, mode === "slot-usage" ? usageRecord() : undefined);
}

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    const n = Math.max(1, Math.min(Number(url.searchParams.get("n") ?? "1"), 10_000_000));
    switch (url.pathname) {
      case "/healthz":
      case "/noop":
        return new Response("ok");
      case "/setup":
        return Response.json({ key: await createKey(env) });
      case "/auth": {
        // What a gateway without a limiter still does per request: check the key in its object.
        const cred = await parseCredential(request.headers.get("authorization"));
        const auth = await keyStub(env, cred.keyId).authenticate(cred);
        return new Response(auth.ok ? "ok" : "denied", { status: auth.ok ? 200 : 401 });
      }
      case "/slot":
      case "/slot-usage": {
        const cred = await parseCredential(request.headers.get("authorization"));
        await pair(env, ctx, cred, url.pathname.slice(1));
        return new Response("ok");
      }
      case "/loop": {
        // n pairs, c at a time, inside one request: the objects' own rate, without HTTP in between.
        const cred = await parseCredential(request.headers.get("authorization"));
        const mode = url.searchParams.get("mode") ?? "slot";
        const c = Math.max(1, Math.min(Number(url.searchParams.get("c") ?? "1"), 500));
        let next = 0;
        const started = Date.now();
        await Promise.all(
          Array.from({ length: c }, async () => {
            while (next < n) {
              next++;
              await pair(env, ctx, cred, mode);
            }
          }),
        );
        return Response.json({ n, ms: Date.now() - started });
      }
      case "/catalog": {
        // The catalog lookup of every chat request, n times; the benchmark divides this request's CPU by n.
        let found = 0;
        for (let i = 0; i < n; i++) if (resolveModel(await getCatalog(env, ctx), MODEL).id === MODEL) found++;
        return Response.json({ n, found });
      }
      default:
        return new Response("not found", { status: 404 });
    }
  },
} satisfies ExportedHandler<Env>;
