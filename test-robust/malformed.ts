// Generates requests that are wrong by construction for the operations of the gateway's own OpenAPI document,
// so the bad-input suite covers every route the gateway serves, including ones added later. Each request
// starts from a well-formed one (right credential, a plausible body, real ids) and breaks exactly one thing
// the document or GLM's rules make an error: the credential, the method, the content type, the JSON syntax
// or its bytes, a field's type or range, a required field, a query or header parameter, the path. Whatever the
// gateway answers must be a 4xx GLM error; nothing generated here may be accepted.
import fc from "fast-check";

export type Schema = Record<string, unknown>;

export interface OpenApiDoc {
  paths: Record<string, Record<string, Schema>>;
  components?: { schemas?: Record<string, Schema> };
}

export interface Param {
  name: string;
  schema: Schema;
}

export interface Operation {
  method: string;
  template: string;
  security: "bearer" | "admin" | null;
  /** The JSON body schema and its component name (for the base body), when the operation takes JSON. */
  json?: { schema: Schema; name: string | undefined; required: boolean };
  /** Other body types the operation accepts (text/plain for summaries): never used as a "wrong" type. */
  contentTypes: string[];
  query: Param[];
  headers: Param[];
  pathParams: Param[];
}

export interface Fixture {
  clientKey: string;
  keyId: string;
  keySecret: string;
  adminToken: string;
  modelId: string;
  /** The catalog as served, the base body of PUT /admin/catalog. */
  catalog: unknown;
}

export interface Malformed {
  kind: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
const JSON_CT = "application/json";

// ---------------------------------------------------------------------------------------------------------
// Reading the document

export function resolve(doc: OpenApiDoc, s: Schema | undefined): Schema {
  let cur = s ?? {};
  for (let i = 0; i < 10 && typeof cur["$ref"] === "string"; i++) {
    cur = doc.components?.schemas?.[(cur["$ref"] as string).split("/").pop()!] ?? {};
  }
  return cur;
}

export function operations(doc: OpenApiDoc): Operation[] {
  const ops: Operation[] = [];
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(item)) {
      if (!METHODS.includes(m.toUpperCase() as (typeof METHODS)[number])) continue;
      const security = JSON.stringify(op["security"] ?? []);
      const params = (op["parameters"] as (Schema & { name: string; in: string; schema: Schema })[] | undefined) ?? [];
      const body = op["requestBody"] as
        { required?: boolean; content?: Record<string, { schema: Schema }> } | undefined;
      const content = body?.content ?? {};
      const jsonSchema = content[JSON_CT]?.schema;
      const ref = jsonSchema?.["$ref"];
      ops.push({
        method: m.toUpperCase(),
        template,
        security: security.includes("adminAuth") ? "admin" : security.includes("bearerAuth") ? "bearer" : null,
        ...(jsonSchema
          ? {
              json: {
                schema: resolve(doc, jsonSchema),
                name: typeof ref === "string" ? ref.split("/").pop() : undefined,
                required: body?.required === true,
              },
            }
          : {}),
        contentTypes: Object.keys(content),
        query: params.filter((p) => p.in === "query").map((p) => ({ name: p.name, schema: resolve(doc, p.schema) })),
        headers: params.filter((p) => p.in === "header").map((p) => ({ name: p.name, schema: resolve(doc, p.schema) })),
        pathParams: params
          .filter((p) => p.in === "path")
          .map((p) => ({ name: p.name, schema: resolve(doc, p.schema) })),
      });
    }
  }
  return ops;
}

function templateRegex(template: string): RegExp {
  return new RegExp("^" + template.replace(/[.+?^$()|[\]\\]/g, "\\$&").replace(/\{[^}/]+\}/g, "[^/]+") + "/?$");
}

/** Methods some operation serves on this concrete path. */
export function allowedMethods(ops: readonly Operation[], path: string): Set<string> {
  const p = path.split("?")[0]!;
  return new Set(ops.filter((o) => templateRegex(o.template).test(p)).map((o) => o.method));
}

// ---------------------------------------------------------------------------------------------------------
// Well-formed starting points

/** A real value for each path parameter, so that only the broken part makes the request wrong. */
function pathFor(op: Operation, fx: Fixture): string {
  return op.template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    if (op.template.includes("/keys/")) return fx.keyId;
    if (op.template.includes("/models/")) return fx.modelId;
    return name === "id" ? "job_00000000000000000000000000000000" : "x";
  });
}

function goodAuth(op: Operation, fx: Fixture): Record<string, string> {
  if (op.security === "admin" || op.template.startsWith("/admin")) return { authorization: `Bearer ${fx.adminToken}` };
  return { authorization: `Bearer ${fx.clientKey}` };
}

/** A plausible body for each known schema; unknown ones start empty. Every field can then be broken. */
function baseBody(op: Operation, fx: Fixture): Record<string, unknown> {
  const chat = {
    model: fx.modelId,
    messages: [{ role: "user", content: "fuzz [[sim: tokens=1]]" }],
    stream: false,
    temperature: 0.5,
    top_p: 0.5,
    max_tokens: 16,
    stop: "zz",
    request_id: "fuzz-request",
    user_id: "fuzz-user",
  };
  const summary = {
    text: "A short text to summarize.",
    model: fx.modelId,
    style: "tldr",
    language: "auto",
    max_tokens: 64,
    instructions: "be brief",
    stream: false,
  };
  switch (op.json?.name) {
    case "ChatCompletionRequest":
    case "AsyncChatCompletionRequest":
      return chat;
    case "SummarizeRequest":
    case "AsyncSummarizeRequest":
      return summary;
    case "TokenRequest":
      return { ttl_seconds: 60, models: [fx.modelId], origin: "https://app.example.com" };
    case "CreateKey":
      return { name: "fuzz", tier: "V0", max_concurrency: 5, daily_budget_cny: 1, daily_token_limit: 1000 };
    case "PatchKey":
      return { name: "fuzz", tier: "V0" };
    case "Catalog":
      return structuredClone(fx.catalog) as Record<string, unknown>;
    default:
      return {};
  }
}

// ---------------------------------------------------------------------------------------------------------
// Values that break a schema

type JsonClass = "string" | "number" | "boolean" | "null" | "array" | "object";
const CLASSES: readonly JsonClass[] = ["string", "number", "boolean", "null", "array", "object"];

function classOf(v: unknown): JsonClass {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v as JsonClass;
}

/** JSON types a schema allows, or undefined when it says nothing (any value). */
function allowedClasses(doc: OpenApiDoc, raw: Schema): Set<JsonClass> | undefined {
  const s = resolve(doc, raw);
  const out = new Set<JsonClass>();
  if (Array.isArray(s["enum"])) for (const v of s["enum"]) out.add(classOf(v));
  if ("const" in s) out.add(classOf(s["const"]));
  const types =
    s["type"] === undefined ? [] : Array.isArray(s["type"]) ? (s["type"] as string[]) : [s["type"] as string];
  for (const t of types) out.add(t === "integer" ? "number" : (t as JsonClass));
  if (s["nullable"] === true) out.add("null");
  for (const k of ["anyOf", "oneOf"]) {
    const branches = s[k] as Schema[] | undefined;
    if (!branches) continue;
    for (const b of branches) {
      const c = allowedClasses(doc, b);
      if (!c) return undefined;
      for (const x of c) out.add(x);
    }
  }
  return out.size > 0 ? out : undefined;
}

/** Marks a value serialised as raw text after JSON.stringify (deep nesting, __proto__ keys). */
class RawJson {
  constructor(readonly text: string) {}
}

function deepArray(depth: number): RawJson {
  return new RawJson("[".repeat(depth) + "]".repeat(depth));
}

function deepObject(depth: number): RawJson {
  return new RawJson('{"a":'.repeat(depth) + "1" + "}".repeat(depth));
}

const HUGE = 300_000;

function valueOfClass(c: JsonClass): fc.Arbitrary<unknown> {
  switch (c) {
    case "string":
      return fc.oneof(
        { weight: 8, arbitrary: fc.string({ maxLength: 24, unit: "binary" }) },
        { weight: 1, arbitrary: fc.constant("x".repeat(HUGE)) },
      );
    case "number":
      return fc.oneof(
        fc.integer(),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.constantFrom(1e308, -1e308, 0, -1),
      );
    case "boolean":
      return fc.boolean();
    case "null":
      return fc.constant(null);
    case "array":
      return fc.oneof(
        { weight: 6, arbitrary: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }) },
        { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map(deepArray) },
        { weight: 1, arbitrary: fc.constant(new Array<number>(50_000).fill(7)) },
      );
    case "object":
      return fc.oneof(
        {
          weight: 6,
          arbitrary: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), {
            maxKeys: 4,
          }),
        },
        { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map(deepObject) },
        {
          weight: 1,
          arbitrary: fc.constant(
            new RawJson('{"__proto__":{"admin":true},"constructor":{"prototype":{"admin":true}}}'),
          ),
        },
      );
  }
}

function patternFails(pattern: string): fc.Arbitrary<string> {
  const re = new RegExp(pattern, "u");
  return fc
    .oneof(fc.constant("!!"), fc.string({ maxLength: 12 }), fc.constant("2026-13-45x"))
    .filter((v) => !re.test(v));
}

/** Values that break this schema whatever else the request says, or none when it accepts anything. */
function violations(doc: OpenApiDoc, raw: Schema, base: unknown): fc.Arbitrary<unknown>[] {
  const s = resolve(doc, raw);
  const out: fc.Arbitrary<unknown>[] = [];
  const allowed = allowedClasses(doc, s);
  if (!allowed) return out;
  const wrong = CLASSES.filter((c) => !allowed.has(c));
  if (wrong.length > 0) out.push(fc.oneof(...wrong.map(valueOfClass)));
  const en = s["enum"];
  if (Array.isArray(en) && en.every((v) => typeof v === "string"))
    out.push(fc.string({ maxLength: 10 }).map((v) => `zz-${v}`));
  const only = (c: JsonClass) => allowed.size === 1 || (allowed.size === 2 && allowed.has("null") && c !== "null");
  if (allowed.has("string") && only("string")) {
    const min = s["minLength"];
    const max = s["maxLength"];
    if (typeof min === "number" && min > 0) out.push(fc.constant("x".repeat(min - 1)));
    if (typeof max === "number" && max < 1_000_000) out.push(fc.constant("y".repeat(max + 1)));
    if (typeof s["pattern"] === "string") out.push(patternFails(s["pattern"]));
  }
  if (allowed.has("number") && only("number")) {
    const types = JSON.stringify(s["type"] ?? "");
    if (types.includes("integer") && !types.includes("number")) out.push(fc.constantFrom(1.5, -0.25, 3.75));
    if (typeof s["minimum"] === "number") out.push(fc.constant(s["minimum"] - 1));
    if (typeof s["exclusiveMinimum"] === "number") out.push(fc.constant(s["exclusiveMinimum"]));
    if (typeof s["maximum"] === "number") out.push(fc.constant(s["maximum"] + 1));
    if (typeof s["exclusiveMaximum"] === "number") out.push(fc.constant(s["exclusiveMaximum"]));
  }
  if (allowed.has("array") && only("array")) {
    const min = s["minItems"];
    const max = s["maxItems"];
    const item = Array.isArray(base) && base.length > 0 ? base[0] : null;
    if (typeof min === "number" && min === 1) out.push(fc.constant([]));
    if (typeof max === "number" && max < 10_000) out.push(fc.constant(new Array<unknown>(max + 1).fill(item)));
  }
  return out;
}

interface Target {
  path: (string | number)[];
  schema: Schema;
  base: unknown;
}

/** Every field of the body a mutation can aim at: declared properties, nested objects, first array items. */
function targets(doc: OpenApiDoc, raw: Schema, value: unknown, path: (string | number)[] = [], depth = 0): Target[] {
  const s = resolve(doc, raw);
  const out: Target[] = [];
  if (depth > 0) out.push({ path, schema: s, base: value });
  if (depth >= 4) return out;
  const props = s["properties"] as Record<string, Schema> | undefined;
  if (props) {
    const obj = value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
    for (const [k, ps] of Object.entries(props)) out.push(...targets(doc, ps, obj[k], [...path, k], depth + 1));
  }
  const items = s["items"] as Schema | undefined;
  if (items && Array.isArray(value) && value.length > 0)
    out.push(...targets(doc, items, value[0], [...path, 0], depth + 1));
  return out;
}

function setAt(root: unknown, path: readonly (string | number)[], v: unknown): unknown {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let cur: Record<string | number, unknown> = copy;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i]!;
    if (typeof cur[k] !== "object" || cur[k] === null) cur[k] = typeof path[i + 1] === "number" ? [] : {};
    cur = cur[k] as Record<string | number, unknown>;
  }
  cur[path[path.length - 1]!] = v;
  return copy;
}

function deleteAt(root: unknown, path: readonly (string | number)[]): unknown {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let cur: Record<string | number, unknown> = copy;
  for (let i = 0; i < path.length - 1; i++) cur = cur[path[i]!] as Record<string | number, unknown>;
  delete cur[path[path.length - 1]!];
  return copy;
}

/** JSON text of a value that may hold RawJson parts (spliced in verbatim). */
function serialize(v: unknown): string {
  const raws: string[] = [];
  const text = JSON.stringify(v, (_k, x: unknown) =>
    x instanceof RawJson ? `\u0000raw${raws.push(x.text) - 1}\u0000` : x,
  );
  return text.replace(/"\\u0000raw(\d+)\\u0000"/g, (_, i: string) => raws[Number(i)]!);
}

function isJson(buf: Buffer): boolean {
  try {
    JSON.parse(new TextDecoder().decode(buf));
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The generator

/** One arbitrary per applicable kind of breakage for this operation; together they cover it. */
export function malformed(
  doc: OpenApiDoc,
  ops: readonly Operation[],
  op: Operation,
  fx: Fixture,
): fc.Arbitrary<Malformed> {
  const path = pathFor(op, fx);
  const auth = goodAuth(op, fx);
  const base = op.json ? baseBody(op, fx) : undefined;
  const jsonHeaders: Record<string, string> = op.json ? { "content-type": JSON_CT } : {};
  const baseBuf = base === undefined ? undefined : Buffer.from(serialize(base));
  const textBody = op.contentTypes.some((t) => t.startsWith("text/"));
  const req = (kind: string, over: Partial<Malformed> = {}): Malformed => ({
    kind,
    method: op.method,
    path,
    headers: { ...auth, ...jsonHeaders },
    ...(baseBuf ? { body: baseBuf } : {}),
    ...over,
  });
  const withBody = (kind: string, body: Buffer) => req(kind, { body });
  // Body breakage is weighted up: a JSON operation has many more ways to be wrong in its body than elsewhere.
  const kinds: { weight: number; arbitrary: fc.Arbitrary<Malformed> }[] = [];
  const add = (arbitrary: fc.Arbitrary<Malformed>, weight = 1) => kinds.push({ weight, arbitrary });

  // Credentials: missing, malformed, unknown, wrong secret, bad or expired JWT, the other side's token.
  if (op.security) {
    const hex32 = fc.stringMatching(/^[0-9a-f]{32}$/);
    const secretLike = fc.stringMatching(/^[A-Za-z0-9_-]{16,40}$/);
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const header = b64({ alg: "HS256", sign_type: "SIGN" });
    const bad: fc.Arbitrary<string | undefined>[] = [
      fc.constant(undefined),
      fc.constantFrom("", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer  \t "),
      fc.string({ maxLength: 60, unit: "grapheme-ascii" }).map((s) => `Bearer ${s.replace(/[\r\n]/g, "")}x`),
      fc
        .uint8Array({ minLength: 1, maxLength: 40 })
        .map((b) => `Bearer ${Buffer.from(b.map((x) => 0x80 | x)).toString("latin1")}`),
      secretLike.map((s) => `Bearer ${fx.keyId}.${s}`),
      hex32.filter((h) => h !== fx.keyId).map((h) => `Bearer ${h}.${fx.keySecret}`),
      fc.constantFrom(
        `Bearer ${fx.keyId}`,
        `Bearer ${fx.keyId}.`,
        `Bearer .${fx.keySecret}`,
        `Bearer ${fx.keyId}.short`,
        `Bearer ${fx.keyId.toUpperCase()}.${fx.keySecret}`,
      ),
      // Fixed dates keep the run reproducible: expired in 2023, or valid until 2100 but unsigned.
      fc
        .integer({ min: 1, max: 1_000_000 })
        .map(
          (ago) =>
            `${header}.${b64({ api_key: fx.keyId, exp: 1_700_000_000_000 - ago, timestamp: 1_699_999_000_000 - ago })}.${b64("bad-signature")}`,
        ),
      fc.constantFrom(
        `Bearer ${b64({ alg: "none" })}.${b64({ api_key: fx.keyId, exp: 4_102_444_800_000 })}.`,
        `Bearer ${header}.${b64({ sub: "nobody" })}.c2ln`,
        `Bearer ${header}.bm90LWpzb24.c2ln`,
      ),
      fc.constant(`Bearer ${"A".repeat(8_000)}`),
      fc.constant(op.security === "admin" ? `Bearer ${fx.clientKey}` : `Bearer ${fx.adminToken}`),
      fc.constantFrom(`Bearer ${fx.adminToken}x`, `Bearer ${fx.adminToken.toUpperCase()}`, `Bearer x${fx.clientKey}`),
    ];
    add(
      fc.oneof(...bad).map((a) => {
        const { authorization: _drop, ...rest } = req("auth").headers;
        return req("auth", { headers: a === undefined ? rest : { ...rest, authorization: a } });
      }),
    );
  }

  // Methods the path does not serve (OPTIONS only where no CORS preflight answers it).
  const allowed = allowedMethods(ops, path);
  const wrongMethods = [...METHODS, ...(path.startsWith("/admin") ? ["OPTIONS"] : [])].filter((m) => !allowed.has(m));
  // A body goes only with methods that carry one (how a runtime treats a GET body is not the gateway's answer).
  const bodyless = (m: string) => m === "GET" || m === "DELETE" || m === "OPTIONS";
  if (wrongMethods.length > 0) {
    add(
      fc
        .constantFrom(...wrongMethods)
        .map((m) =>
          bodyless(m) ? { kind: "method", method: m, path, headers: { ...auth } } : req("method", { method: m }),
        ),
    );
  }

  // A path under this one that no route serves, and broken or unknown ids in path parameters.
  add(fc.stringMatching(/^[a-z0-9-]{1,12}$/).map((seg) => req("path", { path: `${path}/zz-${seg}` })));
  if (op.pathParams.length > 0) {
    const ids = fc.oneof(
      fc.stringMatching(/^[0-9a-f]{32}$/).filter((h) => h !== fx.keyId),
      fc.stringMatching(/^[a-z0-9-]{1,20}$/).map((s) => `zz-${s}`),
      fc.constantFrom(
        "%ff",
        "%00",
        "%e4%b8",
        "%2e%2e",
        "..%2f..%2fadmin",
        "%c0%af",
        "a%20b",
        "%F0%9F%98%80",
        "x".repeat(5_000),
      ),
    );
    add(ids.map((id) => req("path-param", { path: op.template.replace(/\{[^}]+\}/, id).replace(/\{[^}]+\}/g, "x") })));
  }

  // Query parameters with a declared constraint, each broken on its own.
  const queryBreaks = op.query.flatMap((p) => {
    const s = p.schema;
    const values: fc.Arbitrary<string>[] = [];
    if (s["type"] === "integer" || s["type"] === "number") {
      values.push(fc.constantFrom("abc", "1.5x", "1e400", "0x1g"));
      if (s["type"] === "integer") values.push(fc.constant("1.5"));
      if (typeof s["minimum"] === "number") values.push(fc.constant(String(s["minimum"] - 1)));
      if (typeof s["maximum"] === "number") values.push(fc.constant(String(s["maximum"] + 1)));
    }
    if (s["type"] === "string") {
      if (typeof s["pattern"] === "string") values.push(patternFails(s["pattern"]));
      if (Array.isArray(s["enum"])) values.push(fc.stringMatching(/^[a-z]{1,8}$/).map((v) => `zz${v}`));
      if (typeof s["minLength"] === "number" && s["minLength"] === 1) values.push(fc.constant(""));
      if (typeof s["maxLength"] === "number") values.push(fc.constant("q".repeat(s["maxLength"] + 1)));
    }
    return values.map((v) => v.map((x) => [p.name, x] as const));
  });
  if (queryBreaks.length > 0) {
    add(
      fc.oneof(...queryBreaks).map(([name, value]) => {
        const q = `${path}?${encodeURIComponent(name)}=${encodeURIComponent(value)}`;
        // A query-configured operation that takes raw text gets a text body, so only the query is wrong.
        return textBody
          ? req("query", {
              path: q,
              headers: { ...auth, "content-type": "text/plain" },
              body: Buffer.from("Some text."),
            })
          : req("query", { path: q });
      }),
    );
  }

  // The queue-timeout header where an operation declares it.
  if (op.headers.some((h) => h.name === "x-queue-timeout-ms")) {
    add(
      fc
        .constantFrom("abc", "-1", "1.5", "1e3", "9999999999", " 5 0", "0x10")
        .map((v) => req("header", { headers: { ...req("h").headers, "x-queue-timeout-ms": v } })),
    );
  }

  if (op.json && base !== undefined && baseBuf) {
    const schema = op.json.schema;
    // Content types other than JSON (and other than the raw text the operation also takes).
    const types = [
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=zz",
      "application/xml",
      "application/jsonl",
      "json",
      "application/javascript",
      "image/png",
    ];
    if (!textBody) types.push("text/plain", "text/html; charset=utf-8");
    add(
      fc.constantFrom(...types, "(none)").map((t) => {
        const { "content-type": _drop, ...rest } = req("ct").headers;
        return req("content-type", { headers: t === "(none)" ? rest : { ...rest, "content-type": t } });
      }),
    );

    // Bytes that are not JSON: cut short, garbage, near-JSON, invalid UTF-8 between tokens, nothing at all.
    const text = baseBuf.toString();
    const syntax = fc
      .oneof(
        fc.integer({ min: 0, max: text.length - 1 }).map((n) => Buffer.from(text.slice(0, n))),
        fc.string({ maxLength: 200, unit: "binary" }).map((s) => Buffer.from(s)),
        fc
          .constantFrom(
            text.replace(/"/g, "'"),
            text.replace(/}$/, ",}"),
            text.replace(/^\{/, "{NaN:"),
            `${text}${text}`,
            `// comment\n${text}`,
            text.replace(/:/, ': undefined, "x":'),
            "{",
            "}",
            "[",
            "",
            "   \n\t ",
            "\u0000",
          )
          .map((s) => Buffer.from(s)),
        fc
          .uint8Array({ minLength: 1, maxLength: 8 })
          .map((b) => Buffer.concat([Buffer.from("{"), Buffer.from(b.map((x) => 0x80 | x)), baseBuf.subarray(1)])),
        fc.constantFrom(
          Buffer.from([0xef, 0xbb, 0xbf, 0xff]),
          Buffer.from([0xc0, 0xaf]),
          Buffer.from([0xed, 0xa0, 0x80]),
          Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]),
        ),
      )
      .filter((b) => !isJson(b));
    add(
      syntax.map((b) => withBody("syntax", b)),
      3,
    );

    // Valid JSON of the wrong shape at the top: not an object, or nested far too deep.
    const topWrong: fc.Arbitrary<string>[] = [
      fc.constantFrom("[]", '"text"', "42", "null", "true", "[{}]"),
      fc.integer({ min: 100, max: 50_000 }).map((d) => deepArray(d).text),
    ];
    if ((schema["required"] as unknown[] | undefined)?.length || schema["additionalProperties"] === false) {
      topWrong.push(fc.integer({ min: 100, max: 20_000 }).map((d) => deepObject(d).text));
    }
    add(
      fc.oneof(...topWrong).map((s) => withBody("top-level", Buffer.from(s))),
      2,
    );

    // One field given a value its schema rules out (wrong type, out of range, not in the enum, too long…).
    const fieldBreaks = targets(doc, schema, base).flatMap((t) =>
      violations(doc, t.schema, t.base).map((v) => v.map((x) => ({ t, x }))),
    );
    if (fieldBreaks.length > 0) {
      add(
        fc
          .oneof(...fieldBreaks)
          .map(({ t, x }) => withBody(`field ${t.path.join(".")}`, Buffer.from(serialize(setAt(base, t.path, x))))),
        6,
      );
    }

    // A required field left out, and a field the schema does not allow.
    const missing = requiredPaths(doc, schema, base);
    if (missing.length > 0)
      add(
        fc
          .constantFrom(...missing)
          .map((p) => withBody(`missing ${p.join(".")}`, Buffer.from(serialize(deleteAt(base, p))))),
        2,
      );
    if (schema["additionalProperties"] === false) {
      add(
        fc
          .stringMatching(/^[a-z_]{1,10}$/)
          .map((k) => withBody("extra-field", Buffer.from(serialize({ ...base, [`zz_${k}`]: 1 })))),
      );
    }
  }
  return fc.oneof(...kinds);
}

/** Paths of required fields present in the base body (top level and one level down). */
function requiredPaths(
  doc: OpenApiDoc,
  raw: Schema,
  base: unknown,
  prefix: (string | number)[] = [],
  depth = 0,
): (string | number)[][] {
  const s = resolve(doc, raw);
  if (!base || typeof base !== "object" || depth > 2) return [];
  const out: (string | number)[][] = [];
  const props = (s["properties"] as Record<string, Schema> | undefined) ?? {};
  for (const k of (s["required"] as string[] | undefined) ?? []) if (k in base) out.push([...prefix, k]);
  for (const [k, ps] of Object.entries(props)) {
    const v = (base as Record<string, unknown>)[k];
    if (Array.isArray(v) && v.length > 0)
      out.push(...requiredPaths(doc, resolve(doc, ps)["items"] as Schema, v[0], [...prefix, k, 0], depth + 1));
    else if (v && typeof v === "object") out.push(...requiredPaths(doc, ps, v, [...prefix, k], depth + 1));
  }
  return out;
}

/** Bodies over the gateway's size limit, one per JSON operation (few: each is megabytes). */
export function oversized(ops: readonly Operation[], fx: Fixture, limitBytes: number): Malformed[] {
  return ops
    .filter((op) => op.json)
    .map((op) => ({
      kind: "oversized",
      method: op.method,
      path: pathFor(op, fx),
      headers: { ...goodAuth(op, fx), "content-type": JSON_CT },
      body: Buffer.from(JSON.stringify({ ...baseBody(op, fx), padding: "z".repeat(limitBytes + 1024) })),
    }));
}
