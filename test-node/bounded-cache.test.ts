// The bounded memory behind the auth caches (src/auth/bounded-cache.ts): plain logic, so it runs in Node.
import { describe, expect, it } from "vitest";
import { BoundedCache } from "../src/auth/bounded-cache.ts";

describe("BoundedCache", () => {
  it("forgets the least recently written entry once full", () => {
    const cache = new BoundedCache<number>(2);
    cache.set("a", 1);
    cache.set("b", 2);
    cache.set("a", 3); // rewritten: now the newest
    cache.set("c", 4);
    expect([cache.get("a"), cache.get("b"), cache.get("c")]).toEqual([3, undefined, 4]);
  });

  it("reads an entry past its expiry as absent, and frees its place", () => {
    const cache = new BoundedCache<true>(2);
    cache.set("old", true, 1_000);
    cache.set("keep", true);
    expect(cache.get("old", 999)).toBe(true);
    expect(cache.get("old", 1_000)).toBeUndefined();
    cache.set("new", true);
    expect([cache.get("keep"), cache.get("new")]).toEqual([true, true]);
  });
});
