// GET /openapi.json: the OpenAPI 3.1 document, generated at build time from the same route definitions and zod
// schemas that validate requests (src/http/openapi-document.ts, written to public/openapi.json by
// scripts/openapi.ts) and read from the static assets on its first request; each answer adds `servers` (this
// origin). Nothing of it is built in the Worker, so neither startup nor the first request pays for the document.
// GET /docs: an interactive reference rendered from it by Scalar's bundle, served from our own assets.
import { Codes, GatewayError } from "../errors.ts";
import type { Router } from "../http/openapi.ts";

/** The asset scripts/openapi.ts writes; wrangler.toml sends requests for it to the Worker first. */
const DOCUMENT_PATH = "/openapi.json";

async function readDocument(assets: Fetcher | undefined, url: string): Promise<string> {
  const res = await assets?.fetch(new URL(DOCUMENT_PATH, url));
  const type = res?.headers.get("content-type") ?? "";
  if (!res?.ok || !type.includes("json")) {
    await res?.body?.cancel();
    throw new Error("public/openapi.json is missing from the static assets (npm run openapi generates it)");
  }
  return res.text();
}

/** Mounts both routes. */
export function mountDocs(app: Router): void {
  /** The generated document's JSON (an object, without `servers`), read once per app, i.e. per isolate. */
  let documentJson: Promise<string> | undefined;
  app.get(DOCUMENT_PATH, async (c) => {
    const pending = (documentJson ??= readDocument(c.env.ASSETS, c.req.url));
    let json: string;
    try {
      json = await pending;
    } catch (err) {
      // Not cached: the next request tries again.
      if (documentJson === pending) documentJson = undefined;
      throw new GatewayError(503, Codes.internal, err instanceof Error ? err.message : String(err));
    }
    const servers = [{ url: new URL(c.req.url).origin, description: "this gateway" }];
    // The document is one JSON object: `servers` goes in as its last member, without parsing the whole document.
    const body = `${json.slice(0, json.lastIndexOf("}"))},"servers":${JSON.stringify(servers)}}`;
    c.header("access-control-allow-origin", "*");
    c.header("cache-control", "public, max-age=300");
    return c.body(body, 200, { "content-type": "application/json" });
  });

  app.get("/docs", (c) => {
    c.header("content-security-policy", DOCS_CSP);
    c.header("x-content-type-options", "nosniff");
    c.header("referrer-policy", "no-referrer");
    return c.html(DOCS_HTML);
  });
}

// Scalar injects its styles at run time, hence 'unsafe-inline' for styles; scripts and connections stay
// on this origin, so the page works offline and sends nothing to third parties.
const DOCS_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src " +
  "'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action " +
  "'none'";

const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>glm-edge API reference</title>
<meta name="description" content="Interactive reference of the glm-edge gateway API, generated from /openapi.json">
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
</head>
<body>
<noscript>This reference needs JavaScript. The raw document is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<div id="app"></div>
<script src="/vendor/scalar/standalone.js"></script>
<script src="/docs.js"></script>
</body>
</html>
`;
