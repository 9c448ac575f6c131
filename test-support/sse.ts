// Reading an SSE body in tests: shared by the workerd tests and the robustness suite (plain code, no runtime APIs).

/** The data payloads of an SSE body, in order ("[DONE]" included). */
export function sseData(text: string): string[] {
  return text
    .split("\n\n")
    .map((e) => e.trim())
    .filter((e) => e.startsWith("data:"))
    .map((e) => e.slice(5).trim());
}
