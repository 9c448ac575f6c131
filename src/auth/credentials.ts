// Parses the Authorization header forms GLM clients really send (GLM's docs at docs.bigmodel.cn and its SDKs):
//   Bearer <id>.<secret>   — current docs, OpenAI SDK, zai-sdk
//   Bearer <jwt> / <jwt>   — zhipuai-sdk-nodejs-v4 and older SDKs, signed HS256 with the key's secret
// Only the shape is checked here; the key's Durable Object verifies the secret or signature.
import { decode, verify } from "hono/jwt";
import { GatewayError, Codes } from "../errors.ts";
import { BoundedCache } from "./bounded-cache.ts";
import { sha256Hex } from "./crypto.ts";

export const KEY_ID_RE = /^[0-9a-f]{32}$/;
const API_KEY_RE = /^([0-9a-f]{32})\.([A-Za-z0-9_-]{16,128})$/;
const JWT_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export type Credential =
  | { kind: "key"; keyId: string; secretHash: string }
  | { kind: "jwt"; keyId: string; token: string }
  | { kind: "token"; keyId: string; token: string }
  /** Work the gateway runs for a key it already authenticated (async jobs); never parsed from a header. */
  | { kind: "internal"; keyId: string };

export function bearerValue(header: string | undefined | null): string | undefined {
  if (!header) return undefined;
  const v = header.trim();
  if (/^Bearer$/i.test(v)) return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(v);
  return (m ? m[1] : v)?.trim();
}

/** The payload of a JWT, unverified (the key's object verifies it): only to learn which key it names. */
function decodeJwtPayload(token: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = decode(token).payload;
    return v && typeof v === "object" ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Hashes of the key secrets this isolate has seen recently. A client sends the same key on every request,
 * and the digest is the most expensive step of parsing it; the cache holds nothing a request does not
 * carry itself, and is bounded (oldest first out).
 */
const secretHashes = new BoundedCache<string>(1024);

async function secretHash(secret: string): Promise<string> {
  const known = secretHashes.get(secret);
  if (known !== undefined) return known;
  const hash = await sha256Hex(secret);
  secretHashes.set(secret, hash);
  return hash;
}

/** Parses the header into a credential; 401 with GLM's codes when it is missing or malformed. */
export async function parseCredential(header: string | undefined | null): Promise<Credential> {
  const value = bearerValue(header);
  if (!value)
    throw new GatewayError(401, Codes.noAuth, "missing Authorization header: send 'Authorization: Bearer <key>'");
  const key = API_KEY_RE.exec(value);
  if (key) return { kind: "key", keyId: key[1]!, secretHash: await secretHash(key[2]!) };
  if (JWT_RE.test(value)) {
    const payload = decodeJwtPayload(value);
    const apiKey = payload?.["api_key"];
    if (typeof apiKey === "string" && KEY_ID_RE.test(apiKey)) return { kind: "jwt", keyId: apiKey, token: value };
    const sub = payload?.["glm_edge_token"];
    if (typeof sub === "string" && KEY_ID_RE.test(sub)) return { kind: "token", keyId: sub, token: value };
    throw new GatewayError(401, Codes.invalidToken, "invalid token: the JWT payload has no valid api_key");
  }
  throw new GatewayError(401, Codes.invalidToken, "invalid API key format: expected <id>.<secret> or a GLM JWT");
}

/**
 * The longest a GLM JWT may be used. GLM's SDKs mean their tokens to live for minutes; a token valid for
 * weeks is a bearer credential nobody can stop short of revoking the key, so an exp further ahead is
 * refused (the same 24 h cap as browser tokens).
 */
export const JWT_MAX_AHEAD_MS = 24 * 3_600_000;
/** Tolerated difference between the clocks of the client that signs and the gateway. */
const JWT_CLOCK_SKEW_MS = 5 * 60_000;
/** A `timestamp` this large is in microseconds: 1e15 ms would be the year 33658. */
const MICROSECONDS = 1e15;

/**
 * Verifies a GLM JWT (HS256, payload {api_key, exp, timestamp} with times in MILLISECONDS) against the
 * key's secret. Returns undefined when valid, else the GLM error to send.
 */
export async function verifyGlmJwt(
  token: string,
  secret: string,
  now = Date.now(),
): Promise<{ code: string; message: string } | undefined> {
  let payload: Record<string, unknown>;
  try {
    // exp is checked below because GLM's is in milliseconds, which the generic check reads as seconds.
    payload = (await verify(token, secret, { alg: "HS256", exp: false, nbf: false, iat: false })) as Record<
      string,
      unknown
    >;
  } catch {
    return { code: Codes.tokenVerifyFailed, message: "token verification failed: bad signature or header" };
  }
  const exp = payload["exp"];
  if (typeof exp !== "number") return { code: Codes.invalidToken, message: "invalid token: exp is missing" };
  // Accept seconds as well as GLM's milliseconds: anything below 1e12 cannot be a millisecond date after 2001.
  const expMs = exp < 1e12 ? exp * 1000 : exp;
  if (expMs <= now) return { code: Codes.tokenExpired, message: "token expired" };
  const timestamp = payload["timestamp"];
  if (typeof timestamp === "number" && timestamp >= MICROSECONDS) {
    // zhipuai-sdk-nodejs-v4 writes timestamp and exp in microseconds, exp only 180 000 after timestamp (its
    // 3-minute TTL, in milliseconds): GLM reads exp as milliseconds, a date millennia ahead. Such a token's
    // life is counted from its timestamp instead, so it too is usable for at most 24 hours.
    const issuedMs = timestamp / 1000;
    if (issuedMs > now + JWT_CLOCK_SKEW_MS)
      return { code: Codes.invalidToken, message: "invalid token: timestamp is in the future" };
    if (now - issuedMs > JWT_MAX_AHEAD_MS)
      return { code: Codes.tokenExpired, message: "token expired: it was issued more than 24 hours ago" };
    return undefined;
  }
  if (expMs > now + JWT_MAX_AHEAD_MS) {
    return {
      code: Codes.invalidToken,
      message: "invalid token: exp is more than 24 hours ahead; mint short-lived tokens",
    };
  }
  return undefined;
}
