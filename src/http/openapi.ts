// Routers are OpenAPIHono instances so each route's schema both validates requests and documents them in
// /openapi.json. Validation failures become GLM-style 400s through the shared hook.
import { OpenAPIHono, z } from "@hono/zod-openapi";
import { zodToGlmError } from "../chat/validate.ts";
import type { AppEnv } from "./context.ts";

export function newRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw zodToGlmError(result.error);
    },
  });
}

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: "1214" }),
      message: z.string().openapi({ example: "invalid field temperature: Too big: expected number to be <=1" }),
    }),
  })
  .openapi("Error");

const err = (description: string) => ({ description, content: { "application/json": { schema: ErrorSchema } } });

/** Error responses shared by authenticated JSON routes. */
export const commonErrors = {
  400: err("Invalid request (GLM codes 1210-1214)"),
  401: err("Missing or invalid credentials (GLM codes 1000-1004)"),
  413: err("Body too large"),
  415: err("Body is not application/json"),
  503: err("Gateway misconfigured or limiter unavailable"),
} as const;

export const limitErrors = {
  429: {
    description: "Concurrency limit (1302) or daily budget (1308) reached; see Retry-After",
    headers: z.object({ "retry-after": z.string().openapi({ example: "1" }) }),
    content: { "application/json": { schema: ErrorSchema } },
  },
  502: err("Upstream unreachable (1234)"),
  504: err("Upstream timed out (1234)"),
} as const;

export const notFound = { 404: err("Not found") } as const;

export const bearerSecurity = [{ bearerAuth: [] }];
export const adminSecurity = [{ adminAuth: [] }];
