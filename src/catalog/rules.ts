// The catalog's rules for a request: the model must exist and be enabled, max_tokens within its output limit.
import type { CatalogView } from "./store.ts";
import type { ModelEntry } from "./schema.ts";
import { Codes, GatewayError } from "../errors.ts";

export function resolveModel(view: CatalogView, id: string): ModelEntry {
  const m = view.byId.get(id);
  if (!m || m.status === "disabled") {
    const known = view.catalog.models.filter((x) => x.status !== "disabled").map((x) => x.id);
    throw new GatewayError(
      400,
      Codes.unknownModel,
      `model does not exist: ${JSON.stringify(id).slice(0, 80)}; available: ${known.join(", ")}`,
    );
  }
  return m;
}

export function checkMaxTokens(model: ModelEntry, maxTokens: number | undefined): void {
  if (maxTokens !== undefined && maxTokens > model.max_output_tokens) {
    throw new GatewayError(
      400,
      Codes.illegalField,
      `invalid field max_tokens: ${maxTokens} exceeds ${model.id}'s maximum output of ${model.max_output_tokens} ` +
        `tokens`,
    );
  }
}
