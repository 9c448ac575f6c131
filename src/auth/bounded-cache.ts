// The isolate's small memories of authentication work (secret digests, verified key ids, blocks and good
// credentials): each bounded, so a flood of distinct credentials cannot grow an isolate's memory.

/** At most `max` entries, the least recently written forgotten first; an entry past its expiry reads as absent. */
export class BoundedCache<V> {
  private readonly map = new Map<string, { value: V; until: number }>();

  constructor(private readonly max: number) {}

  get(key: string, now = Date.now()): V | undefined {
    const entry = this.map.get(key);
    if (entry === undefined) return undefined;
    if (entry.until > now) return entry.value;
    this.map.delete(key);
    return undefined;
  }

  set(key: string, value: V, until = Infinity): void {
    this.map.delete(key);
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value!);
    this.map.set(key, { value, until });
  }
}
