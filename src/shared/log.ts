// Structured logs: one JSON object per line, so Workers Logs and `wrangler tail` can filter fields.
// Callers pass only non-secret fields; keys are logged by id, never by value.
export type LogFields = Record<string, unknown> & { msg?: string; level?: "info" | "warn" | "error" };

export function log(fields: LogFields): void {
  const line = JSON.stringify({ ts: new Date().toISOString(), level: "info", ...fields });
  if (fields.level === "error") console.error(line);
  else if (fields.level === "warn") console.warn(line);
  else console.log(line);
}
