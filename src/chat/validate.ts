// Turns schema failures into GLM's 400 codes (1213 missing field, 1214 illegal field), naming the field,
// and applies the catalog's rules: the model must exist and be enabled, max_tokens within its output limit.
import type { ZodError } from "zod";
import type { CatalogView } from "../catalog/store.ts";
import type { ModelEntry } from "../catalog/schema.ts";
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
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more problem${error.issues.length > 2 ? "s" : ""})` : "";
  return new GatewayError(400, Codes.illegalField, `invalid field ${field}: ${issue.message}${more}`);
}

export function resolveModel(view: CatalogView, id: string): ModelEntry {
  const m = view.byId.get(id);
  if (!m || m.status === "disabled") {
    const known = view.catalog.models.filter((x) => x.status !== "disabled").map((x) => x.id);
    throw new GatewayError(400, Codes.unknownModel, `model does not exist: ${JSON.stringify(id).slice(0, 80)}; available: ${known.join(", ")}`);
  }
  return m;
}

export function checkMaxTokens(model: ModelEntry, maxTokens: number | undefined): void {
  if (maxTokens !== undefined && maxTokens > model.max_output_tokens) {
    throw new GatewayError(
      400,
      Codes.illegalField,
      `invalid field max_tokens: ${maxTokens} exceeds ${model.id}'s maximum output of ${model.max_output_tokens} tokens`,
    );
  }
}
