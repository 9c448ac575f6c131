// Short-lived browser tokens: a JWT signed HS256 with the issuing key's secret, so it dies with the key
// (revocation) and at its own expiry. Payload: {glm_edge_token: <key id>, exp (s), iat, models, origin, jti}.
import { sign, verify } from "hono/jwt";
import { Codes } from "../errors.ts";

export const TOKEN_TTL_DEFAULT_S = 600;
export const TOKEN_TTL_MAX_S = 86_400;

export interface TokenClaims {
  models: string[] | null;
  origin: string | null;
  exp: number;
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
): Promise<TokenClaims | { status: 401 | 403; code: string; message: string }> {
  let p: Record<string, unknown>;
  try {
    p = (await verify(token, secret, { alg: "HS256", exp: false, nbf: false, iat: false })) as Record<string, unknown>;
  } catch {
    return { status: 401, code: Codes.tokenVerifyFailed, message: "token verification failed" };
  }
  const exp = typeof p["exp"] === "number" ? p["exp"] : 0;
  if (exp * 1000 <= Date.now()) return { status: 401, code: Codes.tokenExpired, message: "token expired" };
  const models = Array.isArray(p["models"]) ? p["models"].filter((m): m is string => typeof m === "string") : null;
  const allowedOrigin = typeof p["origin"] === "string" ? p["origin"] : null;
  if (allowedOrigin !== null && origin !== allowedOrigin) {
    return { status: 403, code: Codes.authFailed, message: `this token may only be used from ${allowedOrigin}` };
  }
  return { models, origin: allowedOrigin, exp };
}
