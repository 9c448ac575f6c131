// How a refused credential is answered. The key's object explains a refusal in detail ("unknown API key",
// "revoked", "wrong secret"), which would let anyone with a guessed or leaked key id learn whether it is a
// live key without knowing its secret. Clients get one answer per credential form instead, whatever the
// reason; the detail stays in the gateway's log line. A refusal is a CredentialRefused, which the
// failed-authentication limit counts (src/http/middleware.ts).
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { Codes, GatewayError } from "../errors.ts";
import type { Credential } from "./credentials.ts";

/** The caller's credential was refused (malformed, unknown, revoked, wrong secret, bad signature). */
export class CredentialRefused extends GatewayError {
  constructor(
    code: string,
    message: string,
    readonly detail?: string,
  ) {
    super(401, code, message);
    this.name = "CredentialRefused";
  }
}

/** The one answer for a key `<id>.<secret>` that is unknown, revoked or has the wrong secret. */
export const INVALID_KEY_MESSAGE = "authentication failed: the API key is invalid or has been revoked";
/**
 * The one answer for a signed token (GLM JWT, browser token) that is badly signed or names an unknown or revoked key.
 */
export const INVALID_TOKEN_MESSAGE =
  "token verification failed: bad signature, or the key is invalid or has been revoked";

/**
 * Turns a denial from the key's object into the error the client sees. 401s with codes 1000 (unknown,
 * revoked, wrong secret) and 1004 (bad signature) become one answer per credential form; an expired or
 * malformed but correctly signed token (1003, 1002) keeps its own answer — only the key's holder can make
 * one. Other denials (403 origin or model, 429 budget) pass through unchanged.
 */
export function refusal(
  cred: Credential,
  denial: { status: number; code: string; message: string; retryAfter?: number },
): GatewayError {
  if (denial.status !== 401) {
    const headers: Record<string, string> =
      denial.retryAfter !== undefined ? { "retry-after": String(denial.retryAfter) } : {};
    return new GatewayError(denial.status as ContentfulStatusCode, denial.code, denial.message, headers);
  }
  if (denial.code === Codes.authFailed || denial.code === Codes.tokenVerifyFailed) {
    return cred.kind === "key"
      ? new CredentialRefused(Codes.authFailed, INVALID_KEY_MESSAGE, denial.message)
      : new CredentialRefused(Codes.tokenVerifyFailed, INVALID_TOKEN_MESSAGE, denial.message);
  }
  return new CredentialRefused(denial.code, denial.message);
}
