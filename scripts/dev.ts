// `npm run dev`: the gateway under `wrangler dev` on port 8787 with local KV and Durable Objects.
// Without a GLM_API_KEY (environment or .dev.vars) it also starts the GLM simulator and points the
// gateway at it, so a fresh clone works with no account; with a key it talks to the real GLM API.
import { copyFileSync, existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { startSimulator, type RunningSimulator } from "../sim/server.ts";
import { startWranglerDev, type GatewayProcess } from "./wrangler-dev.ts";

const ROOT = resolve(import.meta.dirname, "..");
const PORT = Number(process.env["PORT"] ?? 8787);
const SIM_PORT = Number(process.env["SIM_PORT"] ?? 8788);

function readDevVars(): Record<string, string> {
  const file = join(ROOT, ".dev.vars");
  if (!existsSync(file)) {
    copyFileSync(join(ROOT, ".dev.vars.example"), file);
    console.log("glm-edge: created .dev.vars from .dev.vars.example (local secrets; never committed)");
  }
  const vars: Record<string, string> = {};
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const m = /^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) vars[m[1]!] = m[2]!.replace(/^"(.*)"$/, "$1");
  }
  return vars;
}

async function main(): Promise<void> {
  const devVars = readDevVars();
  const apiKey = process.env["GLM_API_KEY"] || devVars["GLM_API_KEY"] || "";
  const vars: Record<string, string> = {};
  let sim: RunningSimulator | undefined;
  if (apiKey === "") {
    sim = await startSimulator({ port: SIM_PORT });
    vars["GLM_BASE_URL"] = sim.baseUrl;
    vars["GLM_API_KEY"] = "simulator.key";
    console.log(`glm-edge: no GLM_API_KEY set, so the gateway talks to the bundled GLM simulator at ${sim.baseUrl}`);
  } else {
    if (process.env["GLM_API_KEY"]) vars["GLM_API_KEY"] = apiKey;
    console.log("glm-edge: GLM_API_KEY is set, so the gateway talks to the real GLM API");
  }
  // Locally the console's all-keys usage follows requests within 2 s rather than the deployed 60 s.
  vars["USAGE_ROLLUP_FLUSH_MS"] = "2000";
  for (const name of [
    "ADMIN_TOKEN",
    "KEY_ENCRYPTION_SECRET",
    "GLM_BASE_URL",
    "GLM_ACCOUNT_TIER",
    "CORS_ORIGINS",
    "USAGE_ROLLUP_FLUSH_MS",
  ]) {
    const v = process.env[name];
    if (v) vars[name] = v;
  }

  // Ctrl+C during start-up aborts the start (which stops wrangler); after it, stops the gateway.
  const stopping = new AbortController();
  const running: { gateway?: GatewayProcess } = {};
  const shutdown = async () => {
    stopping.abort();
    await running.gateway?.stop();
    await sim?.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown());
  process.on("SIGTERM", () => void shutdown());

  const gateway = await startWranglerDev({
    port: PORT,
    vars,
    persistTo: join(ROOT, ".wrangler", "state"),
    inherit: true,
    logLevel: "info",
    signal: stopping.signal,
    // A broken Worker (a syntax error, a missing export) should say so, not wait forever.
    readyTimeoutMs: 120_000,
  });
  running.gateway = gateway;
  const admin = process.env["ADMIN_TOKEN"] || devVars["ADMIN_TOKEN"] || "(set ADMIN_TOKEN in .dev.vars)";
  console.log(`
glm-edge is ready on ${gateway.url}   (Ctrl+C stops it${sim ? " and the simulator" : ""})
  playground  ${gateway.url}/
  API docs    ${gateway.url}/docs
  create a key:
    curl -s ${gateway.url}/admin/keys -H 'Authorization: Bearer ${admin}' -H 'Content-Type: application/json' -d '{"name":"me","tier":"V0"}'
`);
  gateway.child.once("exit", (code) => {
    void sim?.close();
    process.exit(code ?? 0);
  });
}

main().catch((err: unknown) => {
  console.error(`glm-edge: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
