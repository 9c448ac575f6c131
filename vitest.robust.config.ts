// The robustness suite (npm run test:robust, also run by .ci/run): bad input, an abort storm and upstream
// chaos against the gateway under `wrangler dev`. One file at a time: each starts its own gateway, and the
// storm's release bound should be measured without another suite competing for the two CI cores.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "robust",
    include: ["test-robust/**/*.test.ts"],
    environment: "node",
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
