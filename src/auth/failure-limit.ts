// The failed-authentication limit: a client IP, or a key id, that keeps presenting bad credentials is
// answered 429 before its request reaches any Durable Object.
//
// Counting uses the Workers rate-limiting bindings (wrangler.toml [[ratelimits]]: AUTH_FAILURES_IP,
// AUTH_FAILURES_KEY). They only offer limit(), which counts a hit and says whether the key is over, so they
// are called only for failures — a request is never counted for succeeding. What the gateway learns from
// an over-limit answer is kept in the isolate ("blocked until …"), and every later request checks that
// first, before its credential reaches the key's object. Each isolate therefore learns of a block from its
// own first failure past the limit: that is the only object call an over-limit source still costs it.
//
// A credential this isolate has seen succeed recently is exempt from both blocks: it is not what is being
// guessed, so its owner keeps working while their key id, or their shared IP, is under attack.
import { BoundedCache } from "./bounded-cache.ts";

/** What the counters key on when the runtime gives no client address (never in production). */
export const UNKNOWN_IP = "unknown";
/** The bindings' period (wrangler.toml), so a block lasts no longer than the window that caused it. */
export const FAILURE_PERIOD_S = 60;
/** Cap on the isolate's memory of blocks and of good credentials (oldest forgotten first). */
const MAX_ENTRIES = 10_000;
/** How long a credential that succeeded stays exempt. */
const GOOD_FOR_MS = 10 * 60_000;

/** The client's address: cf-connecting-ip (set by Cloudflare), else the first x-forwarded-for hop. */
export function clientIp(headers: Headers): string {
  const cf = headers.get("cf-connecting-ip")?.trim();
  if (cf) return cf.slice(0, 64);
  const forwarded = headers.get("x-forwarded-for")?.split(",")[0]?.trim();
  return forwarded ? forwarded.slice(0, 64) : UNKNOWN_IP;
}

/** Blocked IPs and key ids → until when; credentials that succeeded → until when they stay exempt. */
const blocked = new BoundedCache<number>(MAX_ENTRIES);
const good = new BoundedCache<true>(MAX_ENTRIES);

/** Seconds left on a block of this IP or key id, or 0 when neither is blocked. */
export function blockedFor(ip: string, keyId: string | null, now = Date.now()): number {
  const until = Math.max(blocked.get(`ip:${ip}`, now) ?? 0, keyId ? (blocked.get(`key:${keyId}`, now) ?? 0) : 0);
  return until > now ? Math.max(1, Math.ceil((until - now) / 1000)) : 0;
}

/** Remembers a credential (by its fingerprint) that its key's object accepted. */
export function rememberGood(fingerprint: string, now = Date.now()): void {
  good.set(fingerprint, true, now + GOOD_FOR_MS);
}

export function isKnownGood(fingerprint: string, now = Date.now()): boolean {
  return good.get(fingerprint, now) !== undefined;
}

/**
 * Counts one failure for the IP and (when known) the key id. Returns the seconds to wait when either is now
 * over its limit (and blocks it in this isolate), else 0. A limiter that cannot be reached does not turn
 * a 401 into a 500: the key's object still refuses every bad credential, so the failure is only logged.
 */
export async function recordFailure(
  env: Env,
  ip: string,
  keyId: string | null,
  onError: (err: unknown) => void,
  now = Date.now(),
): Promise<number> {
  const count = (limiter: RateLimit | undefined, key: string) =>
    limiter
      ? limiter.limit({ key }).then(
          (r) => !r.success,
          (err: unknown) => (onError(err), false),
        )
      : Promise.resolve(false);
  const [ipOver, keyOver] = await Promise.all([
    count(env.AUTH_FAILURES_IP, ip),
    keyId ? count(env.AUTH_FAILURES_KEY, keyId) : false,
  ]);
  const until = now + FAILURE_PERIOD_S * 1000;
  if (ipOver) blocked.set(`ip:${ip}`, until, until);
  if (keyOver && keyId) blocked.set(`key:${keyId}`, until, until);
  return ipOver || keyOver ? FAILURE_PERIOD_S : 0;
}
