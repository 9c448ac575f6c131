// Writes the OpenAPI document the Worker serves at /openapi.json to public/openapi.json (a static asset, not
// committed), generated from the app's route definitions by src/http/openapi-document.ts. Runs before the
// Worker is built, run or tested (npm's prepare, pretest, predev, prebuild, predeploy and the workerd tests'
// global setup), so the served document is always the one the code describes.
//   node scripts/openapi.ts            write it (only when it changed, so wrangler's watcher sees no churn)
//   node scripts/openapi.ts --stdout   print it instead
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { registerHooks } from "node:module";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const ROOT = resolve(import.meta.dirname, "..");
export const OPENAPI_FILE = join(ROOT, "public", "openapi.json");

// The Durable Object modules import workerd's built-in module; the document needs only their routes, so Node
// gets an empty stand-in for it.
const STAND_IN =
  "data:text/javascript,export class DurableObject {}; export class WorkerEntrypoint {}; export const env = {};";
registerHooks({
  resolve: (specifier, context, next) =>
    specifier === "cloudflare:workers" ? { url: STAND_IN, shortCircuit: true } : next(specifier, context),
});

interface DocumentModule {
  openApiDocument(entries: readonly unknown[]): unknown;
}
interface AppModule {
  createApp(): { docEntries: readonly unknown[] };
}

/** The document as served, minus `servers`: compact JSON, which the Worker completes per request. */
export async function generateOpenApi(): Promise<string> {
  // The document module first: it installs zod-to-openapi's `.openapi()` before the app builds any schema.
  const { openApiDocument } = (await import(
    pathToFileURL(join(ROOT, "src/http/openapi-document.ts")).href
  )) as DocumentModule;
  const { createApp } = (await import(pathToFileURL(join(ROOT, "src/app.ts")).href)) as AppModule;
  return JSON.stringify(openApiDocument(createApp().docEntries));
}

if (import.meta.main) {
  const json = await generateOpenApi();
  if (process.argv.includes("--stdout")) process.stdout.write(json + "\n");
  else if (!existsSync(OPENAPI_FILE) || readFileSync(OPENAPI_FILE, "utf8") !== json) {
    writeFileSync(OPENAPI_FILE, json);
    console.log(`openapi: wrote public/openapi.json (${(json.length / 1024).toFixed(1)} KiB)`);
  }
}
