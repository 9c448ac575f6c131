// zod, with `.openapi()` on every schema: the metadata /openapi.json is generated from. Import it as
// `import * as z from "../shared/zod.ts"` and use `z.object(…)`, `z.infer<…>`: a namespace import used that way lets
// the bundler keep only the parts of zod in use, where a `z` object passed around as a value would pull in all of
// zod, its 40 locales included (what `import { z } from "@hono/zod-openapi"` did: 560 KiB of the bundle).
import { ZodType } from "zod";
import { extendZodWithOpenApi } from "@asteasolutions/zod-to-openapi";

// It only patches ZodType.prototype, so it needs nothing else of zod.
extendZodWithOpenApi({ ZodType } as Parameters<typeof extendZodWithOpenApi>[0]);

export * from "zod";
