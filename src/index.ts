// The Worker entry: the HTTP app, the async-job queue consumer, and the Durable Object classes they bind.
import { createApp } from "./app.ts";
import { handleQueue } from "./jobs/consumer.ts";

export { KeyObject } from "./keys/key-object.ts";
export { UpstreamGuard } from "./limiter/guard.ts";
export { JobObject } from "./jobs/job-object.ts";
export { JobIndex } from "./jobs/job-index.ts";
export { UsageRollup } from "./usage/rollup.ts";

const app = createApp();

export default {
  fetch: app.fetch,
  queue: handleQueue,
} satisfies ExportedHandler<Env>;
