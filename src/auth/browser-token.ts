// Short-lived browser tokens: a JWT signed HS256 with the issuing key's secret, so it dies with the key
// (revocation) and at its own expiry. Payload: {glm_edge_token: <key id>, exp (s), iat, models, origin, jti}.
import { sign, verify } from "hono/jwt";
import { Codes } from "../errors.ts";

export const TOKEN_TTL_DEFAULT_S = 600;
export const TOKEN_TTL_MAX_S = 86_400;
/** Tolerated difference between the clocks of the isolates that mint and verify. */
const CLOCK_SKEW_MS = 60_000;

export interface TokenClaims {
  models: string[] | null;
  origin: string | null;
  exp: number;
  /** When the token was minted (seconds): an admin's "revoke all tokens" refuses those minted before. */
  iat: number;
}

export async function mintBrowserToken(
  keyId: string,
  secret: string,
  claims: { ttlSeconds: number; models: string[] | null; origin: string | null },
  now = Date.now(),
): Promise<{ token: string; expires_at: string }> {
  const iat = Math.floor(now / 1000);
  const exp = iat + claims.ttlSeconds;
  const token = await sign(
    { glm_edge_token: keyId, iat, exp, models: claims.models, origin: claims.origin, jti: crypto.randomUUID() },
    secret,
    "HS256",
  );
  return { token, expires_at: new Date(exp * 1000).toISOString() };
}

export async function verifyBrowserToken(
  token: string,
  secret: string,
  origin: string | null,
  now = Date.now(),
): Promise<TokenClaims | { status: 401 | 403; code: string; message: string }> {
  let p: Record<string, unknown>;
  try {
    p = (await verify(token, secret, { alg: "HS256", exp: false, nbf: false, iat: false })) as Record<string, unknown>;
  } catch {
    return { status: 401, code: Codes.tokenVerifyFailed, message: "token verification failed" };
  }
  const { exp, iat, models, origin: allowedOrigin } = p;
  const invalid = (why: string) => ({
    status: 401 as const,
    code: Codes.invalidToken,
    message: `invalid token: ${why}`,
  });
  // Only the key's holder can sign, but a hand-made token must still respect the documented limits.
  if (typeof exp !== "number" || !Number.isFinite(exp) || typeof iat !== "number" || !Number.isFinite(iat))
    return invalid("exp or iat is missing");
  if (exp * 1000 <= now) return { status: 401, code: Codes.tokenExpired, message: "token expired" };
  if (exp - iat > TOKEN_TTL_MAX_S || iat * 1000 > now + CLOCK_SKEW_MS)
    return invalid(`its lifetime exceeds the ${TOKEN_TTL_MAX_S} s maximum`);
  if (models != null && !(Array.isArray(models) && models.every((m) => typeof m === "string")))
    return invalid("models is not a list of model ids");
  if (allowedOrigin != null && typeof allowedOrigin !== "string") return invalid("origin is not a string");
  const bound = allowedOrigin ?? null;
  if (bound !== null && origin !== bound) {
    return {
      status: 403,
      code: Codes.authFailed,
      message:
        `this token may only be used from ` +
        `${bound}${origin === null ? " (the request has no Origin header)" : `, not from ${origin.slice(0, 200)}`}`,
    };
  }
  return { models: (models as string[] | null | undefined) ?? null, origin: bound, exp, iat };
}
