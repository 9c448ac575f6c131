// Copies the browser bundles the static pages load from node_modules into public/vendor/, so they work
// offline and `wrangler deploy` uploads them with the other static assets: the API reference (Scalar's
// standalone build, for GET /docs), the console's charts (uPlot's ES module and its styles) and the
// playground's SSE parser (eventsource-parser's ES modules, which import one another by relative path). Runs as
// npm's "prepare" step (after `npm ci` / `npm install`); the copies are not committed.
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");

interface Vendored {
  pkg: string;
  /** Which page needs it, for the error when it is missing. */
  usedBy: string;
  out: string;
  files: string[];
}

const VENDORED: Vendored[] = [
  {
    pkg: "@scalar/api-reference",
    usedBy: "the API reference page",
    out: "scalar",
    files: ["dist/browser/standalone.js"],
  },
  {
    pkg: "uplot",
    usedBy: "the console's charts",
    out: "uplot",
    files: ["dist/uPlot.esm.js", "dist/uPlot.min.css", "LICENSE"],
  },
  {
    pkg: "eventsource-parser",
    usedBy: "the playground's streaming",
    out: "eventsource-parser",
    files: ["dist/index.js", "dist/parse.js", "dist/errors.js", "LICENSE"],
  },
];

for (const { pkg, usedBy, out, files } of VENDORED) {
  const dir = join(ROOT, "node_modules", pkg);
  for (const file of files) {
    const from = join(dir, file);
    const to = join(ROOT, "public", "vendor", out, file.split("/").at(-1)!);
    if (!existsSync(from)) {
      console.error(`vendor-assets: ${from} is missing; run npm ci (${usedBy} needs ${pkg})`);
      process.exit(1);
    }
    // Skip an identical copy so repeated installs do not touch the file (and wrangler's asset watcher).
    if (existsSync(to) && statSync(to).size === statSync(from).size && readFileSync(to).equals(readFileSync(from)))
      continue;
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(from, to);
  }
  const version = (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
  console.log(`vendor-assets: ${pkg} ${version} → public/vendor/${out}/`);
}
