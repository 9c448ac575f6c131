// Starts the GLM simulator on a free loopback port for the workerd tests and hands its URL to them
// (inject("simUrl")) and to the Worker's GLM_BASE_URL binding; and a webhook receiver for the async job
// tests (inject("hookUrl")). First it generates public/openapi.json, the document the Worker serves, from
// the code under test (`npm test` does too; this covers `npx vitest run test/…`).
import { execFileSync } from "node:child_process";
import type { TestProject } from "vitest/node";
import { startSimulator } from "../sim/server.ts";
import { startHookReceiver } from "./jobs-receiver.ts";

declare module "vitest" {
  export interface ProvidedContext {
    simUrl: string;
    hookUrl: string;
    /** Three more simulators, each playing one upstream account of a pool (test/pool.test.ts). */
    poolSimUrls: string[];
  }
}

export default async function setup(project: TestProject) {
  execFileSync(
    process.execPath,
    ["--experimental-transform-types", "--disable-warning=ExperimentalWarning", "scripts/openapi.ts"],
    { cwd: project.config.root, stdio: "inherit" },
  );
  const sim = await startSimulator({ port: 0 });
  project.provide("simUrl", sim.url);
  const accounts = await Promise.all([0, 1, 2].map(() => startSimulator({ port: 0 })));
  project.provide(
    "poolSimUrls",
    accounts.map((a) => a.url),
  );
  const hooks = await startHookReceiver();
  project.provide("hookUrl", hooks.url);
  return async () => {
    await hooks.close();
    await sim.close();
    await Promise.all(accounts.map((a) => a.close()));
  };
}
