// Reads the catalog through an in-isolate cache in front of KV (stale-while-revalidate in waitUntil).
// The cache holds values only: a promise shared across requests breaks in production Workers.
import { DEFAULT_CATALOG } from "./default.ts";
import { catalogSchema, type Catalog, type ModelEntry } from "./schema.ts";
import { Codes, GatewayError } from "../errors.ts";
import { log } from "../shared/log.ts";
import type { WaitUntil } from "../shared/wait-until.ts";

export const CATALOG_KV_KEY = "catalog:v1";
/** How long a cached copy is served without a refresh; KV adds its own edge cache (cacheTtl) on top. */
export const FRESH_MS = 5_000;
const KV_CACHE_TTL_S = 30;

export interface CatalogView {
  catalog: Catalog;
  byId: Map<string, ModelEntry>;
  etag: string;
  source: "kv" | "default" | "last-good";
}

interface CacheSlot {
  view: CatalogView;
  fetchedAt: number;
  refreshing: boolean;
}

function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

export function makeView(catalog: Catalog, source: CatalogView["source"]): CatalogView {
  return {
    catalog,
    byId: new Map(catalog.models.map((m) => [m.id, m])),
    etag: `"c${catalog.version}-${fnv1a(JSON.stringify(catalog))}"`,
    source,
  };
}

/**
 * Loads from KV. The bundled default is served (and written to KV) only when KV holds no catalog at all:
 * a null from KV's edge cache may predate an admin's first write, so it is confirmed by an uncached read
 * before anything is written. Throws on KV failure or an invalid stored catalog.
 */
async function loadFromKv(env: Env, ctx: WaitUntil, cacheTtl: number | null): Promise<CatalogView> {
  let raw = await env.KV.get(CATALOG_KV_KEY, cacheTtl === null ? { type: "json" } : { type: "json", cacheTtl });
  if (raw === null && cacheTtl !== null) raw = await env.KV.get(CATALOG_KV_KEY, { type: "json" });
  if (raw === null) {
    ctx.waitUntil(env.KV.put(CATALOG_KV_KEY, JSON.stringify(DEFAULT_CATALOG)).catch(() => undefined));
    return makeView(DEFAULT_CATALOG, "default");
  }
  const parsed = catalogSchema().safeParse(raw);
  if (!parsed.success) throw new Error(`catalog in KV is invalid: ${parsed.error.issues[0]?.message ?? "?"}`);
  return makeView(parsed.data, "kv");
}

/** One isolate's cache of the catalog. The app uses the module's single instance; tests make their own. */
export class CatalogCache {
  private slot: CacheSlot | undefined;

  /** kvCacheTtlS: KV's own edge cache for reads (null: none, for tests that change KV under the cache). */
  constructor(private readonly kvCacheTtlS: number | null = KV_CACHE_TTL_S) {}

  /**
   * KV failed: the last good copy, else nothing. Never the bundled default: KV may hold an admin's edits
   * (a disabled model, a changed price) that the default would silently undo, so without a copy in memory
   * the request fails (503) instead.
   */
  private fallback(err: unknown): CatalogView {
    const last = this.slot?.view;
    log({
      level: last ? "warn" : "error",
      msg: "catalog: KV read failed, " + (last ? "serving the last good copy" : "no copy to serve"),
      error: String(err),
    });
    if (!last) {
      throw new GatewayError(
        503,
        Codes.unavailable,
        "the model catalog is unavailable (its store could not be read); retry in a few seconds",
        { "retry-after": "2" },
      );
    }
    return { ...last, source: "last-good" };
  }

  /** The catalog for this request: from memory when fresh, refreshed in the background when stale. */
  async get(env: Env, ctx: WaitUntil, now = Date.now()): Promise<CatalogView> {
    const current = this.slot;
    if (current && now - current.fetchedAt < FRESH_MS) return current.view;
    if (current) {
      if (!current.refreshing) {
        current.refreshing = true;
        ctx.waitUntil(
          loadFromKv(env, ctx, this.kvCacheTtlS)
            .then((view) => {
              this.slot = { view, fetchedAt: Date.now(), refreshing: false };
            })
            .catch((err: unknown) => {
              // Keep serving the last good copy; try again after another FRESH_MS.
              this.slot = { view: this.fallback(err), fetchedAt: Date.now(), refreshing: false };
            }),
        );
      }
      return current.view;
    }
    let view: CatalogView;
    try {
      view = await loadFromKv(env, ctx, this.kvCacheTtlS);
    } catch (err) {
      view = this.fallback(err);
    }
    // Aged from the request's own clock reading, so callers passing `now` see consistent freshness.
    this.slot = { view, fetchedAt: now, refreshing: false };
    return view;
  }

  /** Admin writes: store, and make this isolate see it at once. */
  async put(env: Env, catalog: Catalog): Promise<CatalogView> {
    await env.KV.put(CATALOG_KV_KEY, JSON.stringify(catalog));
    const view = makeView(catalog, "kv");
    this.slot = { view, fetchedAt: Date.now(), refreshing: false };
    return view;
  }
}

const shared = new CatalogCache();

/** The catalog for this request, through the isolate's cache. */
export function getCatalog(env: Env, ctx: WaitUntil, now = Date.now()): Promise<CatalogView> {
  return shared.get(env, ctx, now);
}

/** Admin writes: validate first (the routes do), then store; this isolate sees the change at once. */
export function putCatalog(env: Env, catalog: Catalog): Promise<CatalogView> {
  return shared.put(env, catalog);
}
