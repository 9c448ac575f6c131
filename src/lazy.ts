// Values built on first use, then kept for the isolate's life.

/**
 * `once(build)` returns a function that calls `build` the first time and returns that same value ever after. Used
 * for zod schemas: building one costs CPU, and an isolate should pay only for the schemas its requests use — not
 * for all of them when it starts. The same instance on every call also keeps /openapi.json's $refs intact.
 */
export function once<T>(build: () => T): () => T {
  let built = false;
  let value: T;
  return () => {
    if (!built) {
      value = build();
      built = true;
    }
    return value;
  };
}
