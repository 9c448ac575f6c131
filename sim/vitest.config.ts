// Vitest config for the simulator's own tests only (sim/*.test.ts), so they run without the
// workers pool or wrangler. From the repo root: node_modules/.bin/vitest run -c sim/vitest.config.ts
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: { include: ["sim/**/*.test.ts"], environment: "node", testTimeout: 10_000 },
});
