// Callback URL policy (SSRF): which webhook targets the gateway will POST to. A pure function, checked at
// submission (400 with the reason) and again before every delivery attempt (the policy may have changed).
//
// The WHATWG URL parser does the hard normalisation for us and we rely on it (tests pin it): decimal,
// octal, hex and short IPv4 forms ("2130706433", "0177.1", "0x7f.1"), percent-encoded and full-width
// digits all come out as a dotted quad, and IPv6 comes out compressed with embedded IPv4 as hex
// ("[::ffff:7f00:1]"). What is left to us is deciding which addresses and names are off limits.
//
// Not covered, by nature: DNS rebinding — a public name that resolves to a private address. A Worker
// cannot resolve a name before fetch(), so names are judged by their spelling only. Cloudflare's fetch()
// from a deployed Worker does not reach private networks or the metadata service anyway; this policy is
// the first line, not the only one.

export type CallbackCheck = { ok: true; url: string } | { ok: false; reason: string };

export interface CallbackPolicy {
  /**
   * WEBHOOK_ALLOW_PRIVATE: local development and tests only. Allows http, loopback and private-network
   * addresses and local names; metadata, link-local, multicast and userinfo stay refused.
   */
  allowPrivate: boolean;
}

export const MAX_CALLBACK_URL_LENGTH = 2048;

/**
 * The only ports a webhook may target (the scheme's default counts as 80 or 443). Other ports reach
 * services a web receiver never runs on (mail, databases, admin consoles); 8443 is the usual alternate
 * HTTPS port. WEBHOOK_ALLOW_PRIVATE=true allows any port, for local receivers.
 */
export const WEBHOOK_PORTS: readonly string[] = ["80", "443", "8443"];

/** Names that always point inside a network (RFC 6761/6762, cloud-internal zones). */
const INTERNAL_SUFFIXES = [
  ".localhost",
  ".local",
  ".internal",
  ".localdomain",
  ".home.arpa",
  ".lan",
  ".intranet",
  ".corp",
];
/** Public wildcard-DNS services whose names map to any embedded IP (e.g. 127.0.0.1.nip.io) or to loopback. */
const REBINDING_DOMAINS = [
  "nip.io",
  "sslip.io",
  "xip.io",
  "localtest.me",
  "lvh.me",
  "vcap.me",
  "traefik.me",
  "lacolhost.com",
];
/** Cloud metadata service names (refused even with allowPrivate). */
const METADATA_NAMES = [
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "instance-data",
  "instance-data.ec2.internal",
  "metadata.azure.com",
  "metadata.tencentyun.com",
  "metadata.platformequinix.com",
];

type Range = readonly [base: number, bits: number, label: string];

const ip4 = (a: number, b: number, c: number, d: number) => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;

/** IPv4 ranges that are never a public webhook receiver. `local: true` ones are allowed with allowPrivate. */
const V4_BLOCKED: readonly (readonly [...Range, local: boolean])[] = [
  [ip4(0, 0, 0, 0), 8, "'this network' (0.0.0.0/8)", false],
  [ip4(10, 0, 0, 0), 8, "private (10.0.0.0/8)", true],
  [ip4(100, 64, 0, 0), 10, "carrier-grade NAT (100.64.0.0/10)", true],
  [ip4(127, 0, 0, 0), 8, "loopback (127.0.0.0/8)", true],
  [ip4(169, 254, 0, 0), 16, "link-local / cloud metadata (169.254.0.0/16)", false],
  [ip4(172, 16, 0, 0), 12, "private (172.16.0.0/12)", true],
  [ip4(192, 0, 0, 0), 24, "IETF protocol assignments (192.0.0.0/24)", false],
  [ip4(192, 0, 2, 0), 24, "documentation (192.0.2.0/24)", false],
  [ip4(192, 88, 99, 0), 24, "6to4 relay anycast (192.88.99.0/24)", false],
  [ip4(192, 168, 0, 0), 16, "private (192.168.0.0/16)", true],
  [ip4(198, 18, 0, 0), 15, "benchmarking (198.18.0.0/15)", false],
  [ip4(198, 51, 100, 0), 24, "documentation (198.51.100.0/24)", false],
  [ip4(203, 0, 113, 0), 24, "documentation (203.0.113.0/24)", false],
  [ip4(224, 0, 0, 0), 4, "multicast (224.0.0.0/4)", false],
  [ip4(240, 0, 0, 0), 4, "reserved or broadcast (240.0.0.0/4)", false],
];

function inRange(addr: number, base: number, bits: number): boolean {
  if (bits === 0) return true;
  const mask = (~0 << (32 - bits)) >>> 0;
  return (addr & mask) >>> 0 === base;
}

/** The reason an IPv4 address is refused, or null. */
function v4Problem(addr: number, allowPrivate: boolean): string | null {
  for (const [base, bits, label, local] of V4_BLOCKED) {
    if (inRange(addr, base, bits) && !(local && allowPrivate)) return `${formatV4(addr)} is a ${label} address`;
  }
  return null;
}

function formatV4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

function parseDottedQuad(host: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return ip4(parts[0]!, parts[1]!, parts[2]!, parts[3]!);
}

/** Eight 16-bit groups from the parser's canonical IPv6 text (brackets removed). */
function parseV6(text: string): number[] | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (s: string) => (s === "" ? [] : s.split(":").map((g) => parseInt(g, 16)));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  const fill = 8 - head.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const all = [...head, ...new Array<number>(fill).fill(0), ...tail];
  return all.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? all : null;
}

const v4From = (hi: number, lo: number) => ((hi << 16) | lo) >>> 0;

/** The reason an IPv6 address is refused, or null. */
function v6Problem(g: number[], allowPrivate: boolean): string | null {
  const zeroPrefix = (n: number) => g.slice(0, n).every((x) => x === 0);
  if (g.every((x) => x === 0)) return "the unspecified address (::)";
  if (zeroPrefix(7) && g[7] === 1) return allowPrivate ? null : "the IPv6 loopback address (::1)";
  // Embedded IPv4 forms: refuse them all — a receiver with an IPv4 address is called by that address.
  if (zeroPrefix(5) && g[5] === 0xffff)
    return "an IPv4-mapped IPv6 address (::ffff:a.b.c.d); use the IPv4 address itself";
  if (zeroPrefix(4) && g[4] === 0xffff && g[5] === 0) return "an IPv4-translated IPv6 address (::ffff:0:a.b.c.d)";
  if (zeroPrefix(6)) return "an IPv4-compatible IPv6 address (::a.b.c.d, deprecated)";
  const first = g[0]!;
  if (first === 0x64 && g[1] === 0xff9b) {
    if (g[2] === 1) return "a local-use NAT64 address (64:ff9b:1::/48)";
    if (g.slice(2, 6).every((x) => x === 0)) {
      const inner = v4Problem(v4From(g[6]!, g[7]!), false);
      if (inner) return `a NAT64 address (64:ff9b::/96) embedding ${inner}`;
    }
    return null;
  }
  if (first === 0x2002) {
    const inner = v4Problem(v4From(g[1]!, g[2]!), false);
    return inner ? `a 6to4 address (2002::/16) embedding ${inner}` : null;
  }
  if (first === 0x2001 && g[1] === 0) return "a Teredo address (2001::/32), which embeds an IPv4 address";
  if (first === 0x2001 && g[1] === 0xdb8) return "a documentation address (2001:db8::/32)";
  if (first === 0x100 && zeroPrefix(4)) return "a discard-only address (100::/64)";
  if ((first & 0xfe00) === 0xfc00) return allowPrivate ? null : "a unique-local IPv6 address (fc00::/7)";
  if ((first & 0xffc0) === 0xfe80) return "a link-local IPv6 address (fe80::/10)";
  if ((first & 0xffc0) === 0xfec0) return "a site-local IPv6 address (fec0::/10, deprecated)";
  if ((first & 0xff00) === 0xff00) return "a multicast IPv6 address (ff00::/8)";
  return null;
}

const LABEL_RE = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** The reason a DNS name is refused, or null. `name` is lower-case with any trailing dot removed. */
function nameProblem(name: string, allowPrivate: boolean): string | null {
  const labels = name.split(".");
  if (name.length > 253 || labels.some((l) => !LABEL_RE.test(l))) return `"${name}" is not a valid host name`;
  if (METADATA_NAMES.includes(name)) return `"${name}" is a cloud metadata service name`;
  if (allowPrivate) return null;
  if (name === "localhost" || INTERNAL_SUFFIXES.some((s) => name.endsWith(s)))
    return `"${name}" is a local or internal name`;
  // Single-label names resolve through internal search domains ("intranet", "db"), never publicly.
  if (labels.length < 2) return `"${name}" is not a fully qualified public name`;
  if (REBINDING_DOMAINS.some((d) => name === d || name.endsWith(`.${d}`))) {
    return `"${name}" is a wildcard DNS name that resolves to arbitrary (often private) addresses`;
  }
  return null;
}

/**
 * Decides whether the gateway may POST webhooks to `raw`. Returns the normalised URL (what is stored and
 * called) or the reason it is refused.
 */
export function checkCallbackUrl(raw: string, policy: CallbackPolicy): CallbackCheck {
  const refuse = (reason: string): CallbackCheck => ({ ok: false, reason });
  if (raw.length > MAX_CALLBACK_URL_LENGTH) return refuse(`it is longer than ${MAX_CALLBACK_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return refuse("it is not a valid absolute URL");
  }
  const scheme = url.protocol.slice(0, -1);
  if (scheme !== "https" && !(scheme === "http" && policy.allowPrivate)) {
    return refuse(
      policy.allowPrivate
        ? `scheme ${scheme} is not allowed (use https or http)`
        : `scheme ${scheme} is not allowed (use https)`,
    );
  }
  // Credentials in a URL end up in logs, and "https://good.com@evil/" tricks readers about the host.
  if (url.username !== "" || url.password !== "" || /^[a-z][a-z0-9+.-]*:\/*[^/?#]*@/i.test(raw.trim())) {
    return refuse("it contains userinfo (user:password@); put credentials in the path or query instead");
  }
  const problem = hostProblem(url.hostname, policy.allowPrivate);
  if (problem) return refuse(problem);
  // url.port is "" for the scheme's default port (the parser drops an explicit :443 on https).
  if (url.port !== "" && !policy.allowPrivate && !WEBHOOK_PORTS.includes(url.port)) {
    return refuse(`port ${url.port} is not allowed (use ${WEBHOOK_PORTS.join(", ")})`);
  }
  return { ok: true, url: url.href };
}

/** Why the URL's host (as the parser normalised it) is refused, or null. */
function hostProblem(hostname: string, allowPrivate: boolean): string | null {
  if (hostname.startsWith("[")) {
    const groups = parseV6(hostname.slice(1, -1));
    if (!groups) return `${hostname} is not a valid IPv6 address`;
    const problem = v6Problem(groups, allowPrivate);
    return problem ? `${hostname} is ${problem}` : null;
  }
  const host = hostname.replace(/\.$/, "");
  const v4 = parseDottedQuad(host);
  return v4 !== null ? v4Problem(v4, allowPrivate) : nameProblem(host, allowPrivate);
}

/**
 * Whether a callback URL is under one of a key's allowed prefixes: the same scheme, host and port, and a path
 * that is the prefix's or continues it at a "/" boundary ("https://a.example/hooks" allows ".../hooks" and
 * ".../hooks/x", not ".../hooksevil" nor "https://a.example.evil.com/…"). Query strings are free.
 */
export function underAllowedPrefix(callback: string, prefixes: readonly string[]): boolean {
  let url: URL;
  try {
    url = new URL(callback);
  } catch {
    return false;
  }
  return prefixes.some((p) => {
    let prefix: URL;
    try {
      prefix = new URL(p);
    } catch {
      return false;
    }
    if (prefix.protocol !== url.protocol || prefix.host !== url.host) return false;
    const base = prefix.pathname.endsWith("/") ? prefix.pathname : prefix.pathname + "/";
    return url.pathname === prefix.pathname || url.pathname.startsWith(base);
  });
}
