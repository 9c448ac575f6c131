// Two test projects: "workers" runs inside workerd (real Durable Objects and KV) against the GLM simulator
// started by test/global-setup.ts; "node" runs the simulator's own tests (sim/) and the end-to-end tests
// that drive `wrangler dev` over real HTTP (test-node/).
import { defineConfig } from "vitest/config";
import { cloudflareTest } from "@cloudflare/vitest-plugin";

export default defineConfig({
  test: {
    // The gateway logs a JSON line per request: show them only for failing tests.
    silent: "passed-only",
    projects: [
      {
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                GLM_BASE_URL: `${inject<string>("simUrl")}/api/paas/v4`,
                GLM_API_KEY: "sim-upstream.key",
                ADMIN_TOKEN: "test-admin-token",
                KEY_ENCRYPTION_SECRET: "test-key-encryption-secret",
                UPSTREAM_TIMEOUT_MS: "3000",
                // Many tests make the one upstream account fail on purpose: its circuit must not open for the
                // others. The circuit's own tests configure accounts of their own with a low threshold.
                UPSTREAM_CIRCUIT_FAILURES: "1000000",
                // Async jobs: webhooks to the loopback receiver, and retry schedules in seconds, not minutes.
                WEBHOOK_ALLOW_PRIVATE: "true",
                WEBHOOK_RETRY_BASE_SECONDS: "1",
                JOB_RETRY_BASE_SECONDS: "1",
                // The admin-wide usage view reads the roll-up: keys send to it in the call that records.
                USAGE_ROLLUP_FLUSH_MS: "0",
              },
            },
          })),
        ],
        test: {
          name: "workers",
          include: ["test/**/*.test.ts"],
          globalSetup: ["./test/global-setup.ts"],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: "node",
          include: ["test-node/**/*.test.ts", "sim/**/*.test.ts"],
          environment: "node",
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
