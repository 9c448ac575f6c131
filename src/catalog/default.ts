// The bundled catalog: GLM-4 models as published on Zhipu's model page (prices CNY per million tokens,
// in-flight limits per account tier). It seeds KV on first use and is the fallback when KV fails.
import type { Catalog } from "./schema.ts";

const common = { tools: true, web_search: true, json_mode: true, streaming: true };

export const DEFAULT_CATALOG: Catalog = {
  version: 1,
  updated_at: "2026-11-25T00:00:00Z",
  models: [
    {
      id: "glm-4-plus",
      context_window: 128_000,
      max_output_tokens: 4_096,
      pricing: { input: 5, output: 5, cached_input: 2.5 },
      concurrency: { V0: 50, V1: 100, V2: 300, V3: 500 },
      capabilities: common,
      status: "active",
      created: 1_727_740_800,
    },
    {
      id: "glm-4-air-250414",
      context_window: 128_000,
      max_output_tokens: 16_384,
      pricing: { input: 0.5, output: 0.5, cached_input: 0.25 },
      concurrency: { V0: 30, V1: 40, V2: 50, V3: 60 },
      capabilities: common,
      status: "active",
      created: 1_744_588_800,
    },
    {
      id: "glm-4-airx",
      context_window: 8_192,
      max_output_tokens: 4_096,
      pricing: { input: 10, output: 10, cached_input: null },
      concurrency: { V0: 5, V1: 30, V2: 40, V3: 50 },
      capabilities: common,
      status: "active",
      created: 1_717_200_000,
    },
    {
      id: "glm-4-flashx-250414",
      context_window: 128_000,
      max_output_tokens: 16_384,
      pricing: { input: 0.1, output: 0.1, cached_input: 0.05 },
      concurrency: { V0: 100, V1: 150, V2: 200, V3: 300 },
      capabilities: common,
      status: "active",
      created: 1_744_588_800,
    },
    {
      id: "glm-4-flash-250414",
      context_window: 128_000,
      max_output_tokens: 16_384,
      pricing: { input: 0, output: 0, cached_input: null },
      concurrency: { V0: 200, V1: 1_000, V2: 2_000, V3: 3_000 },
      capabilities: common,
      status: "active",
      created: 1_744_588_800,
    },
    {
      // Limits for glm-4-long are not published; these conservative values are our assumption.
      id: "glm-4-long",
      context_window: 1_000_000,
      max_output_tokens: 4_096,
      pricing: { input: 1, output: 1, cached_input: 0.5 },
      concurrency: { V0: 10, V1: 20, V2: 30, V3: 40 },
      capabilities: { ...common, web_search: false },
      status: "active",
      created: 1_717_200_000,
    },
  ],
};
