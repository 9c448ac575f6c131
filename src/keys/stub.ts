// The one way to reach a key's Durable Object: one KeyObject per key id.

export function keyStub(env: Env, keyId: string) {
  return env.KEYS.get(env.KEYS.idFromName(keyId));
}
