// The Worker's variables, read through one schema (src/config.ts): blanks take the documented defaults, and a
// bad value is a 503 that names the variable (never its value), not a silent default.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { readConfig } from "../src/config.ts";
import { GatewayError } from "../src/errors.ts";
import { chatWithEnv, createKey } from "./helpers.ts";

const withVars = (vars: Record<string, string | undefined>) => ({ ...env, ...vars }) as Env;

describe("configuration", () => {
  it("gives an unset or blank variable its default", () => {
    const cfg = readConfig(
      withVars({
        UPSTREAM_TIMEOUT_MS: "",
        UPSTREAM_DEADLINE_MS: undefined,
        GLM_ACCOUNT_TIER: " ",
        ASYNC_MAX_ACTIVE_JOBS: undefined,
        WEBHOOK_ALLOW_PRIVATE: "",
      }),
    );
    expect(cfg.upstreamTimeoutMs).toBe(60_000);
    expect(cfg.deadlineMs).toBe(120_000);
    expect(cfg.accountTier).toBe("V0");
    expect(cfg.maxActiveJobs).toBe(100);
    expect(cfg.webhookAllowPrivate).toBe(false);
  });

  it("reads the values given", () => {
    const cfg = readConfig(
      withVars({
        UPSTREAM_TIMEOUT_MS: "5000",
        UPSTREAM_DEADLINE_MS: undefined,
        GLM_ACCOUNT_TIER: "V2",
        WEBHOOK_ALLOW_PRIVATE: "TRUE",
        JOB_RETRY_BASE_SECONDS: "0.5",
        CORS_ORIGINS: "https://a.example, https://b.example",
      }),
    );
    expect(cfg.upstreamTimeoutMs).toBe(5000);
    expect(cfg.deadlineMs).toBe(10_000);
    expect(cfg.accountTier).toBe("V2");
    expect(cfg.webhookAllowPrivate).toBe(true);
    expect(cfg.jobRetryBaseS).toBe(0.5);
    expect(cfg.corsOrigins).toEqual(["https://a.example", "https://b.example"]);
  });

  it.each([
    ["UPSTREAM_TIMEOUT_MS", "soon"],
    ["UPSTREAM_MAX_ATTEMPTS", "2.5"],
    ["UPSTREAM_GUARD_SHARD_SLOTS", "0"],
    ["GLM_ACCOUNT_TIER", "V9"],
    ["GLM_BASE_URL", "ftp://glm.example"],
    ["WEBHOOK_ALLOW_PRIVATE", "yes"],
    ["JOB_RETRY_BASE_SECONDS", "-1"],
    ["SUMMARIZE_MAX_UPSTREAM_CALLS", "many"],
  ])("refuses %s=%s with a 503 naming the variable, not the value", (name, value) => {
    let thrown: unknown;
    try {
      readConfig(withVars({ [name]: value }));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(GatewayError);
    const err = thrown as GatewayError;
    expect(err.status).toBe(503);
    expect(err.message).toMatch(new RegExp(`^gateway misconfigured: ${name}: `));
    expect(err.message).not.toContain(value);
  });

  it("answers a request 503 naming the bad variable", async () => {
    const k = await createKey();
    const res = await chatWithEnv(k.key, { UPSTREAM_MAX_ATTEMPTS: "three" });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      error: { code: "503", message: expect.stringContaining("UPSTREAM_MAX_ATTEMPTS") },
    });
  });
});
