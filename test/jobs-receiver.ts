// A webhook receiver for the job tests (started in test/global-setup.ts for workerd, in-process for the
// end-to-end test). POST /hooks/<name>?fail=N&status=S&redirect=1 records every delivery and answers
// S (default 500) to the first N, 302 when redirect=1, nothing at all when hang=1, else 204.
// GET /_hooks/<name> lists what arrived.
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedHook {
  headers: Record<string, string>;
  body: string;
  /** What the receiver answered. */
  status: number;
  at: number;
}

export interface HookReceiver {
  url: string;
  received(name: string): ReceivedHook[];
  close(): Promise<void>;
}

export async function startHookReceiver(): Promise<HookReceiver> {
  const log = new Map<string, ReceivedHook[]>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://receiver");
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const list = url.pathname.match(/^\/_hooks\/([\w.-]+)$/);
      if (req.method === "GET" && list) {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(log.get(list[1]!) ?? []));
        return;
      }
      const hook = url.pathname.match(/^\/hooks\/([\w.-]+)$/);
      if (req.method !== "POST" || !hook) {
        res.writeHead(404).end();
        return;
      }
      const name = hook[1]!;
      const seen = log.get(name) ?? [];
      log.set(name, seen);
      const fail = Number(url.searchParams.get("fail") ?? "0");
      const redirect = url.searchParams.get("redirect") === "1";
      if (url.searchParams.get("hang") === "1") {
        seen.push({ headers: {}, body: "", status: 0, at: Date.now() });
        return;
      }
      const status = redirect ? 302 : seen.length < fail ? Number(url.searchParams.get("status") ?? "500") : 204;
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
      seen.push({ headers, body: Buffer.concat(chunks).toString("utf8"), status, at: Date.now() });
      res
        .writeHead(
          status,
          redirect ? { location: `http://${req.headers.host ?? "receiver"}/hooks/${name}-redirected` } : {},
        )
        .end(status === 204 ? undefined : "no");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    received: (name) => log.get(name) ?? [],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
