// The index of keys in KV (`key:<id>` → the key's public record): what GET /admin/keys lists, and how a key
// created before ids carried a tag is still recognised without calling its object. The key's object stays
// the source of truth; this is only its listing.
import type { PublicKey } from "./schema.ts";

const KEY_INDEX_PREFIX = "key:";

/** Whether the index lists this key id (one KV read, cached at the edge for a minute). */
export async function isIndexed(env: Env, id: string): Promise<boolean> {
  return (await env.KV.get(KEY_INDEX_PREFIX + id, { cacheTtl: 60 })) !== null;
}

export async function writeIndex(env: Env, key: PublicKey): Promise<void> {
  await env.KV.put(KEY_INDEX_PREFIX + key.id, JSON.stringify(key));
}

export async function indexedKey(env: Env, id: string): Promise<PublicKey | null> {
  return env.KV.get<PublicKey>(KEY_INDEX_PREFIX + id, "json");
}

/** One page of the index, in KV's order. */
export async function indexPage(
  env: Env,
  limit: number,
  cursor?: string,
): Promise<{ keys: PublicKey[]; cursor: string | null }> {
  const page = await env.KV.list({ prefix: KEY_INDEX_PREFIX, limit, ...(cursor ? { cursor } : {}) });
  const keys = (await Promise.all(page.keys.map((k) => env.KV.get<PublicKey>(k.name, "json")))).filter(
    (k) => k !== null,
  );
  return { keys, cursor: page.list_complete ? null : page.cursor };
}

/** Every indexed key id (one KV list call per 1000 keys). */
export async function allKeyIds(env: Env): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await env.KV.list({ prefix: KEY_INDEX_PREFIX, ...(cursor ? { cursor } : {}) });
    ids.push(...page.keys.map((k) => k.name.slice(KEY_INDEX_PREFIX.length)));
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  return ids;
}
