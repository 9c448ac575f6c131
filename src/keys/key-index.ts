// The index of keys in KV (`key:<id>` → the key's public record): what GET /admin/keys lists, and how a key
// created before ids carried a tag is still recognised without calling its object.
export const KEY_INDEX_PREFIX = "key:";

/** Whether the index lists this key id (one KV read, cached at the edge for a minute). */
export async function isIndexed(env: Env, id: string): Promise<boolean> {
  return (await env.KV.get(KEY_INDEX_PREFIX + id, { cacheTtl: 60 })) !== null;
}
