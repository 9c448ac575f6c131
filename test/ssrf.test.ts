// The callback URL policy (src/jobs/ssrf.ts) against workerd's own URL parser: every notation of a
// private, loopback, link-local, metadata or otherwise non-public target is refused with a reason, at
// the function and through the submit route; WEBHOOK_ALLOW_PRIVATE opens http and loopback only.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { checkCallbackUrl } from "../src/jobs/ssrf.ts";
import { chatBody, createKey, type CreatedKey } from "./helpers.ts";

const strict = { allowPrivate: false };
const dev = { allowPrivate: true };

/** [url, a fragment of the reason] — each is refused in production mode. */
const REFUSED: [string, string][] = [
  ["http://example.com/hook", "scheme http"],
  ["ftp://example.com/hook", "scheme ftp"],
  ["javascript:alert(1)", "scheme javascript"],
  ["file:///etc/passwd", "scheme file"],
  ["/relative/hook", "not a valid absolute URL"],
  ["", "not a valid absolute URL"],
  ["https://user:pass@example.com/hook", "userinfo"],
  ["https://example.com@127.0.0.1/", "userinfo"],
  ["https://@example.com/", "userinfo"],
  ["https://evil.com\\@127.0.0.1/", "userinfo"],
  ["https://localhost/hook", "local or internal"],
  ["https://LOCALHOST./hook", "local or internal"],
  ["https://api.localhost/hook", "local or internal"],
  ["https://printer.local/", "local or internal"],
  ["https://service.internal/", "local or internal"],
  ["https://metadata.google.internal/computeMetadata/v1/", "metadata"],
  ["https://metadata/", "metadata"],
  ["https://instance-data/latest/", "metadata"],
  ["https://intranet/", "not a fully qualified"],
  ["https://127.0.0.1.nip.io/", "wildcard DNS"],
  ["https://localtest.me/", "wildcard DNS"],
  ["https://127.0.0.1/", "loopback"],
  ["https://127.0.0.1./", "loopback"],
  ["https://127.1/", "loopback"],
  ["https://2130706433/", "loopback"],
  ["https://017700000001/", "loopback"],
  ["https://0x7f.0x0.0x0.0x1/", "loopback"],
  ["https://0x7f000001/", "loopback"],
  ["https://127.000.000.001/", "loopback"],
  ["https://%31%32%37.0.0.1/", "loopback"],
  ["https://１２７.０.０.１/", "loopback"],
  ["https://0/", "'this network'"],
  ["https://0.0.0.0:8080/", "'this network'"],
  ["https://10.0.0.1/", "private (10"],
  ["https://172.16.0.1/", "private (172.16"],
  ["https://172.31.255.255/", "private (172.16"],
  ["https://192.168.1.1:8443/hook", "private (192.168"],
  ["https://100.64.0.1/", "carrier-grade NAT"],
  ["https://100.100.100.200/", "carrier-grade NAT"],
  ["https://169.254.169.254/latest/meta-data/", "link-local"],
  ["https://0251.0376.0251.0376/", "link-local"],
  ["https://0xa9fea9fe/", "link-local"],
  ["https://2852039166/", "link-local"],
  ["https://192.0.0.170/", "IETF protocol"],
  ["https://198.18.0.1/", "benchmarking"],
  ["https://192.0.2.10/", "documentation"],
  ["https://224.0.0.1/", "multicast"],
  ["https://239.255.255.250/", "multicast"],
  ["https://240.0.0.1/", "reserved or broadcast"],
  ["https://255.255.255.255/", "reserved or broadcast"],
  ["https://[::]/", "unspecified"],
  ["https://[::1]/", "loopback"],
  ["https://[0:0:0:0:0:0:0:1]/", "loopback"],
  ["https://[::ffff:127.0.0.1]/", "IPv4-mapped"],
  ["https://[::ffff:7f00:1]/", "IPv4-mapped"],
  ["https://[::ffff:169.254.169.254]/", "IPv4-mapped"],
  ["https://[::ffff:8.8.8.8]/", "IPv4-mapped"],
  ["https://[::ffff:0:7f00:1]/", "IPv4-translated"],
  ["https://[::127.0.0.1]/", "IPv4-compatible"],
  ["https://[64:ff9b::169.254.169.254]/", "NAT64"],
  ["https://[64:ff9b::7f00:1]/", "NAT64"],
  ["https://[64:ff9b:1::1]/", "local-use NAT64"],
  ["https://[2002:7f00:1::]/", "6to4"],
  ["https://[2002:a9fe:a9fe::1]/", "6to4"],
  ["https://[2002:c0a8:101::1]/", "6to4"],
  ["https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"],
  ["https://[fc00::1]/", "unique-local"],
  ["https://[fd00:ec2::254]/", "unique-local"],
  ["https://[fe80::1]/", "link-local"],
  ["https://[fe80::1%25eth0]/", "not a valid absolute URL"],
  ["https://[fec0::1]/", "site-local"],
  ["https://[ff02::1]/", "multicast"],
  ["https://[2001:db8::1]/", "documentation"],
  ["https://a..b/", "not a valid host name"],
  [`https://example.com/${"a".repeat(2100)}`, "longer than"],
  ["https://example.com:22/hook", "port 22 is not allowed"],
  ["https://example.com:6379/", "port 6379 is not allowed"],
  ["http://example.com:8080/", "scheme http"],
  ["https://8.8.8.8:25/", "port 25 is not allowed"],
  ["https://[2606:4700:4700::1111]:9200/", "port 9200 is not allowed"],
];

const ACCEPTED: [string, string][] = [
  ["https://example.com/hook", "https://example.com/hook"],
  ["https://Hooks.Example.COM:8443/glm?x=1", "https://hooks.example.com:8443/glm?x=1"],
  ["https://example.com./hook", "https://example.com./hook"],
  ["https://8.8.8.8/hook", "https://8.8.8.8/hook"],
  ["https://172.32.0.1/", "https://172.32.0.1/"],
  ["https://100.128.0.1/", "https://100.128.0.1/"],
  ["https://[2606:4700:4700::1111]/hook", "https://[2606:4700:4700::1111]/hook"],
  ["https://[64:ff9b::808:808]/", "https://[64:ff9b::808:808]/"],
  ["https://[2002:808:808::1]/", "https://[2002:808:808::1]/"],
  ["https://example.com/path@with-at", "https://example.com/path@with-at"],
  ["https://example.com/#frag@x", "https://example.com/#frag@x"],
  ["https://metadata.example.com/", "https://metadata.example.com/"],
  ["https://example.com:443/hook", "https://example.com/hook"],
  ["https://example.com:80/hook", "https://example.com:80/hook"],
];

describe("checkCallbackUrl", () => {
  it("covers a matrix of well over 30 tricky URLs", () => {
    expect(REFUSED.length).toBeGreaterThanOrEqual(60);
  });

  it.each(REFUSED)("refuses %s", (url, reason) => {
    const r = checkCallbackUrl(url, strict);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain(reason);
  });

  it.each(ACCEPTED)("accepts %s as %s", (url, normalised) => {
    expect(checkCallbackUrl(url, strict)).toEqual({ ok: true, url: normalised });
  });

  it("with WEBHOOK_ALLOW_PRIVATE allows http, loopback, private networks and local names", () => {
    for (const url of [
      "http://127.0.0.1:8787/hook",
      "http://localhost:3000/hook",
      "https://[::1]/",
      "http://10.1.2.3/",
      "http://192.168.0.10:9000/",
      "http://host.docker.internal:8080/",
      "http://receiver:8080/",
      "http://[fd12::1]/",
    ]) {
      expect(checkCallbackUrl(url, dev), url).toMatchObject({ ok: true });
      expect(checkCallbackUrl(url, strict).ok, url).toBe(false);
    }
  });

  it("with WEBHOOK_ALLOW_PRIVATE still refuses metadata, link-local, multicast, userinfo and other schemes", () => {
    for (const url of [
      "http://169.254.169.254/latest/meta-data/",
      "http://0251.0376.0251.0376/",
      "http://metadata.google.internal/",
      "http://metadata/",
      "http://[fe80::1]/",
      "http://[::ffff:127.0.0.1]/",
      "http://224.0.0.1/",
      "http://0.0.0.0/",
      "http://user:pw@127.0.0.1/",
      "ftp://127.0.0.1/",
    ]) {
      expect(checkCallbackUrl(url, dev).ok, url).toBe(false);
    }
  });
});

describe("POST /async/chat/completions with a refused callback_url", () => {
  let k: CreatedKey;
  beforeAll(async () => {
    k = await createKey();
  });

  // The production setting (WEBHOOK_ALLOW_PRIVATE=false), whatever the test environment says.
  async function submitStrict(callbackUrl: string): Promise<Response> {
    const ctx = createExecutionContext();
    const res = await createApp().fetch(
      new Request("http://gw/v1/async/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
        body: JSON.stringify(chatBody("hi", { callback_url: callbackUrl })),
      }),
      { ...env, WEBHOOK_ALLOW_PRIVATE: "false" },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    return res;
  }

  it.each(REFUSED.filter(([url]) => url.length < 2000))(
    "answers 400 1214 with the reason for %s",
    async (url, reason) => {
      const res = await submitStrict(url);
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("1214");
      expect(body.error.message).toContain("callback_url");
      expect(body.error.message).toContain(reason);
    },
  );

  it("accepts a public https URL", async () => {
    const res = await submitStrict("https://hooks.example.com/glm");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ task_status: "PROCESSING" });
  });
});
