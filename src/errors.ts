// GLM-style errors: every failure the gateway produces has the upstream's shape
// {"error":{"code":"<string>","message":"…"}} so GLM's SDKs and OpenAI-style clients parse it the same way.
import type { ContentfulStatusCode } from "hono/utils/http-status";

export interface GlmErrorBody {
  error: { code: string; message: string };
}

/** Thrown anywhere below the routes; app.onError turns it into a JSON response. */
export class GatewayError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "GatewayError";
  }
}

export function errorBody(code: string, message: string): GlmErrorBody {
  return { error: { code, message } };
}

export function errorResponse(
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(errorBody(code, message)), {
    status,
    headers: { "content-type": "application/json; charset=UTF-8", ...headers },
  });
}

/** Codes the gateway itself uses, named for readability; values are GLM's codes where GLM has one. */
export const Codes = {
  authFailed: "1000",
  noAuth: "1001",
  invalidToken: "1002",
  tokenExpired: "1003",
  tokenVerifyFailed: "1004",
  badParams: "1210",
  unknownModel: "1211",
  methodNotSupported: "1212",
  missingField: "1213",
  illegalField: "1214",
  promptTooLong: "1261",
  concurrency: "1302",
  /** The gateway's own (GLM has none): too many failed authentications from a client IP or for a key id. */
  authRateLimited: "429",
  overloaded: "1305",
  usageCap: "1308",
  internal: "500",
  network: "1234",
  notFound: "404",
  unavailable: "503",
} as const;
