// The schemas in src/keys/, src/usage/ and src/jobs/ are the only source of the types the code builds answers with,
// and they document /openapi.json: what the routes answer must be exactly what they describe. Parsed strictly where
// the schema is closed, so a field the answer carries but the document leaves out (or the other way round) fails.
import { describe, expect, it } from "vitest";
import { createdKeySchema, keyDetailSchema, publicKeySchema } from "../src/keys/schema.ts";
import { asyncResultSchema, asyncTaskSchema } from "../src/jobs/schema.ts";
import {
  adminUsageReportSchema,
  usageRecordSchema,
  usageReportSchema,
  usageTotalsSchema,
} from "../src/usage/schema.ts";
import { admin, chat, chatBody, createKey, gw } from "./helpers.ts";
import { hookUrl, settled, submitOk } from "./jobs-helpers.ts";

async function json(res: Response | Promise<Response>): Promise<unknown> {
  const r = await res;
  expect(r.status, await r.clone().text()).toBeLessThan(300);
  return r.json();
}

describe("answers match their schemas", () => {
  it("keys: created, one key with its in-flight counts, and a key after its tokens were revoked", async () => {
    const created = await json(admin("POST", "/keys", { name: "schemas", tier: "V1", max_upstream_share: 0.5 }));
    const key = createdKeySchema().strict().parse(created);
    expect(key.max_upstream_share).toBe(0.5);
    keyDetailSchema()
      .strict()
      .parse(await json(admin("GET", `/keys/${key.id}`)));
    const revoked = publicKeySchema()
      .strict()
      .parse(await json(admin("POST", `/keys/${key.id}/revoke-tokens`)));
    expect(revoked.tokens_valid_after).toEqual(expect.any(Number));
  });

  it("usage: the caller's report, the admin report and a key's per-request records", async () => {
    const k = await createKey();
    expect((await chat(k.key, chatBody("count me [[sim: tokens=7]]"))).status).toBe(200);
    const own = usageReportSchema()
      .strict()
      .parse(await json(gw("/v1/usage", { headers: { authorization: `Bearer ${k.key}` } })));
    usageTotalsSchema().strict().parse(own.totals);
    expect(own.totals.requests).toBe(1);
    const report = adminUsageReportSchema()
      .strict()
      .parse(await json(admin("GET", `/usage?key_id=${k.id}`)));
    expect(report.by_day_model).toHaveLength(1);
    const { data } = (await json(admin("GET", `/keys/${k.id}/requests`))) as { data: unknown[] };
    expect(data).toHaveLength(1);
    // account and attempt were in every record long before the document named them.
    expect(usageRecordSchema().strict().parse(data[0])).toMatchObject({ kind: "chat", ended: "completed", attempt: 1 });
  });

  it("jobs: the submission's answer and the finished job with its webhook log", async () => {
    const k = await createKey();
    const url = hookUrl(`schemas-${crypto.randomUUID()}`);
    const task = asyncTaskSchema()
      .strict()
      .parse(await submitOk(k.key, chatBody("a job [[sim: tokens=5]]", { callback_url: url })));
    await settled(k.key, task.id, { webhook: true });
    const view = asyncResultSchema().parse(
      await json(gw(`/v1/async-result/${task.id}`, { headers: { authorization: `Bearer ${k.key}` } })),
    );
    expect(view).toMatchObject({ task_status: "SUCCESS", kind: "chat", webhook: { url, state: "delivered" } });
  });
});
