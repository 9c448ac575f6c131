// zod, with `.openapi()` on every schema: the metadata /openapi.json is generated from. Import it as
// `import * as z from "../shared/zod.ts"` and use `z.object(…)`, `z.infer<…>`: a namespace import used that way lets
// the bundler keep only the parts of zod in use, where a `z` object passed around as a value would pull in all of
// zod, its 40 locales included (what `import { z } from "@hono/zod-openapi"` did: 560 KiB of the bundle).
//
// The document is generated at build time (src/http/openapi-document.ts, which installs zod-to-openapi's real
// `.openapi()` before any schema is built). In the Worker `.openapi()` only returns its schema: the metadata
// changes nothing a request is validated against, and zod-to-openapi stays out of the bundle.
import type {} from "@asteasolutions/zod-to-openapi"; // its typing of `.openapi()` on every schema
import { ZodType } from "zod";

/** The Worker's `.openapi()`: the schema itself, unchanged. openapi-document.ts recognises and replaces it. */
export function openapiInWorker<T>(this: T): T {
  return this;
}

const proto = ZodType.prototype as { openapi?: unknown };
proto.openapi ??= openapiInWorker;

export * from "zod";
