// Starts the GLM simulator on a free loopback port for the workerd tests and hands its URL to them
// (inject("simUrl")) and to the Worker's GLM_BASE_URL binding.
import type { TestProject } from "vitest/node";
import { startSimulator } from "../sim/server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    simUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const sim = await startSimulator({ port: 0 });
  project.provide("simUrl", sim.url);
  return async () => {
    await sim.close();
  };
}
