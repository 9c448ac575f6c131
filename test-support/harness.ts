// End-to-end harness: the GLM simulator and the gateway under `wrangler dev`, wired together on
// loopback with fresh local state, plus helpers to create keys over the real HTTP admin API.
import { startSimulator, type RunningSimulator } from "../sim/server.ts";
import { freePort, startWranglerDev, type GatewayProcess } from "../scripts/wrangler-dev.ts";

export const ADMIN_TOKEN = "e2e-admin-token";

export interface E2E {
  url: string;
  sim: RunningSimulator;
  gateway: GatewayProcess;
  createKey(settings?: Record<string, unknown>): Promise<{ id: string; key: string; webhook_secret: string }>;
  close(): Promise<void>;
}

export async function startE2E(
  opts: { vars?: Record<string, string>; sim?: Parameters<typeof startSimulator>[0] } = {},
): Promise<E2E> {
  const sim = await startSimulator({ port: 0, ...opts.sim });
  let gateway: GatewayProcess | undefined;
  // The free port is only free when it is picked: another process can take it before wrangler binds it.
  for (let attempt = 0; gateway === undefined; attempt++) {
    try {
      gateway = await startWranglerDev({
        port: await freePort(),
        vars: {
          GLM_BASE_URL: sim.baseUrl,
          GLM_API_KEY: "sim-upstream.key",
          ADMIN_TOKEN,
          KEY_ENCRYPTION_SECRET: "e2e-key-encryption-secret",
          // The all-keys usage view (the console's Spend tab) reads the roll-up: keys send to it as they record.
          USAGE_ROLLUP_FLUSH_MS: "0",
          ...opts.vars,
        },
      });
    } catch (err) {
      if (attempt < 2 && /EADDRINUSE|address already in use/i.test(String(err))) continue;
      await sim.close();
      throw err;
    }
  }
  return {
    url: gateway.url,
    sim,
    gateway,
    async createKey(settings = {}) {
      const res = await fetch(`${gateway.url}/admin/keys`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "e2e", tier: "V0", ...settings }),
      });
      if (res.status !== 201) throw new Error(`createKey: ${res.status} ${await res.text()}`);
      return (await res.json()) as { id: string; key: string; webhook_secret: string };
    },
    async close() {
      await gateway.stop();
      await sim.close();
    },
  };
}
