// Serves the simulator core over node:http on loopback, for gateway tests and `wrangler dev`.
// The adapter's real job is connection fidelity: it notices a client disconnect at once (the
// response's 'close' event), aborts the request so the core stops generating and counts it as
// cancelled, turns a core "network error" into a TCP reset, and flushes every SSE event by itself.
// Run as a script: node sim/server.ts [--port N]   (or SIM_PORT=N; default 8788)

import http from "node:http";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import type { SimConfig } from "./config.ts";
import { createSimulator, type Simulator } from "./simulator.ts";

export type RunningSimulator = {
  url: string; // origin, e.g. http://127.0.0.1:8788 — the /_sim/* controls live right under it
  baseUrl: string; // url + /api/paas/v4: what a GLM client (or the gateway's GLM_BASE_URL) points at
  port: number;
  sim: Simulator;
  close(): Promise<void>;
};

/** Before any byte: an RST, the "connection reset by peer" a failing upstream produces. */
function reset(res: http.ServerResponse): void {
  if (res.socket) res.socket.resetAndDestroy();
  else res.destroy();
}

/**
 * Mid-stream: close the socket without the terminating chunk, after flushing what was written.
 * Not an RST here: Linux drops received-but-unread data on RST, so clients would lose some of the
 * N chunks promised by break_after=N and tests would turn flaky.
 */
function breakOff(res: http.ServerResponse): void {
  const socket = res.socket;
  if (!socket) return void res.destroy();
  socket.end(() => socket.destroy());
}

async function handle(sim: Simulator, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const abort = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) abort.abort();
  });

  const chunks: Buffer[] = [];
  try {
    for await (const chunk of req) chunks.push(chunk as Buffer);
  } catch {
    return; // the client went away while still sending its body
  }
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const request = new Request(`http://${req.headers.host ?? "127.0.0.1"}${req.url ?? "/"}`, {
    method: req.method,
    headers,
    body: hasBody ? Buffer.concat(chunks) : undefined,
    signal: abort.signal,
  });
  // Node's Request follows `abort.signal` only through a WeakRef to its own controller: keep the Request
  // reachable until the exchange ends, or a garbage collection silently cuts a client's disconnect off
  // from the core and a hanging request stays "in flight" for ever.
  res.once("close", () => void request.signal);

  const response = await sim.fetch(request);
  if (abort.signal.aborted) return void response.body?.cancel().catch(() => {});
  if (response.type === "error") return reset(res);

  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.flushHeaders(); // SSE clients must see the headers before the first (possibly delayed) event
  if (!response.body) return void res.end();
  const reader = response.body.getReader();
  abort.signal.addEventListener("abort", () => void reader.cancel().catch(() => {}), { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || abort.signal.aborted) break;
      res.write(value); // one write per event; the socket has no Nagle delay (noDelay defaults to true)
    }
    if (!abort.signal.aborted) res.end();
  } catch {
    if (!abort.signal.aborted) breakOff(res); // the core broke the stream on purpose (break_after)
  }
}

export async function startSimulator(
  opts: { port?: number; host?: string } & Partial<SimConfig> = {},
): Promise<RunningSimulator> {
  const { port = 0, host = "127.0.0.1", ...config } = opts;
  const sim = createSimulator(config);
  const server = http.createServer((req, res) => {
    handle(sim, req, res).catch((err: unknown) => {
      console.error("GLM simulator: request failed", err);
      if (res.headersSent || res.destroyed) res.destroy();
      else res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  const url = `http://${host}:${bound}`;
  return {
    url,
    baseUrl: `${url}/api/paas/v4`,
    port: bound,
    sim,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // hanging streams would otherwise keep close() waiting forever
      }),
  };
}

function portFromArgs(argv: string[]): number {
  const i = argv.indexOf("--port");
  const raw = i >= 0 ? argv[i + 1] : process.env.SIM_PORT;
  const port = Number(raw ?? 8788);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port: ${raw}`);
  return port;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const running = await startSimulator({ port: portFromArgs(process.argv.slice(2)) });
  console.log(`GLM simulator listening on ${running.baseUrl}`);
  const stop = () => void running.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
