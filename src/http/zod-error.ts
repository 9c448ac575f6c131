// Turns a schema failure into GLM's 400 codes (1213 missing field, 1214 illegal field), naming the field.
import type { ZodError } from "zod";
import { Codes, GatewayError } from "../errors.ts";

function fieldName(path: readonly PropertyKey[]): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s === "" ? String(p) : `.${String(p)}`;
  return s || "body";
}

export function zodToGlmError(error: ZodError): GatewayError {
  const issue = error.issues[0];
  if (!issue) return new GatewayError(400, Codes.badParams, "invalid request body");
  const field = fieldName(issue.path);
  const missing = issue.code === "invalid_type" && /received undefined/.test(issue.message);
  if (missing) return new GatewayError(400, Codes.missingField, `missing required field: ${field}`);
  const more =
    error.issues.length > 1
      ? ` (and ${error.issues.length - 1} more problem${error.issues.length > 2 ? "s" : ""})`
      : "";
  return new GatewayError(400, Codes.illegalField, `invalid field ${field}: ${issue.message}${more}`);
}
