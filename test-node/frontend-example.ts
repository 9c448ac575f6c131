// "Your app" for the browser tests: a separate origin that serves the README's example page and, like any
// back end, mints browser tokens from the gateway with a key the browser never sees (POST /api/glm-token).
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { resolve, sep } from "node:path";

const PAGE = resolve(import.meta.dirname, "fixtures", "frontend-example.html");
const EXAMPLE_GATEWAY = "https://glm-edge.example.workers.dev";
/** The `openai` package's ES modules, served to the page at /openai/ so the SDK itself runs in the browser. */
const OPENAI_DIR = resolve(import.meta.dirname, "..", "node_modules", "openai");

/**
 * A page that streams a chat with the `openai` SDK (as the README says a browser may), with a token from
 * this app's back end; it shows the answer in #answer and "done" or the error in #status.
 */
function sdkPage(gateway: string): string {
  return `<!doctype html><meta charset="utf-8"><p id="answer"></p><p id="status">…</p>
<script type="module">
import OpenAI from "/openai/index.mjs";
const status = document.getElementById("status");
try {
  const { token } = await (await fetch("/api/glm-token", { method: "POST" })).json();
  const client = new OpenAI({ baseURL: ${JSON.stringify(gateway + "/v1")}, apiKey: token, dangerouslyAllowBrowser: true, maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: "glm-4-flash-250414", stream: true,
    messages: [{ role: "user", content: new URLSearchParams(location.search).get("q") ?? "Hello" }],
  });
  for await (const chunk of stream) document.getElementById("answer").textContent += chunk.choices[0]?.delta?.content ?? "";
  status.textContent = "done";
} catch (err) {
  status.textContent = "error: " + err.message;
}
</script>`;
}

export interface FrontendApp {
  /** This app's origin, e.g. http://127.0.0.1:PORT (a different origin from the gateway's). */
  url: string;
  /** What the token endpoint asked the gateway for, last. */
  lastMint(): Record<string, unknown> | undefined;
  close(): Promise<void>;
}

/**
 * @param gateway the gateway's URL, written into the page in place of the README's example URL
 * @param key the back end's gateway key
 * @param mint the body sent to POST /v1/tokens; the default binds the token to this app's origin
 */
export async function startFrontendApp(
  gateway: string,
  key: string,
  mint?: (origin: string) => Record<string, unknown>,
): Promise<FrontendApp> {
  const html = readFileSync(PAGE, "utf8");
  if (!html.includes(EXAMPLE_GATEWAY)) throw new Error(`${PAGE} no longer names ${EXAMPLE_GATEWAY}`);
  let origin = "";
  let last: Record<string, unknown> | undefined;
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? "/").split("?")[0]!;
      if (req.method === "GET" && path === "/sdk.html") {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        res.end(sdkPage(gateway));
        return;
      }
      if (req.method === "GET" && path.startsWith("/openai/") && path.endsWith(".mjs")) {
        const file = resolve(OPENAI_DIR, "." + decodeURIComponent(path.slice("/openai".length)));
        if (!file.startsWith(OPENAI_DIR + sep)) return void res.writeHead(404).end();
        res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
        res.end(readFileSync(file));
        return;
      }
      if (req.method === "GET" && (req.url === "/" || req.url === "/index.html")) {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        res.end(html.replace(EXAMPLE_GATEWAY, gateway));
        return;
      }
      if (req.method === "POST" && req.url === "/api/glm-token") {
        // The README's back-end snippet: the key stays on the server.
        last = mint ? mint(origin) : { ttl_seconds: 600, models: ["glm-4-flash-250414"], origin };
        const minted = await fetch(`${gateway}/v1/tokens`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify(last),
        });
        res.writeHead(minted.status, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(await minted.text());
        return;
      }
      res.writeHead(404).end();
    })().catch((err: unknown) => {
      res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  origin = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  return {
    url: origin,
    lastMint: () => last,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
