// The classification caches: lru-cache bounded by entry count, with the hit/miss counters the
// cache statistics report.
import { LRUCache } from "lru-cache";

export class Lru<K extends {}, V extends {}> {
  readonly #cache: LRUCache<K, V>;
  hits = 0;
  misses = 0;

  constructor(max: number) {
    this.#cache = new LRUCache<K, V>({ max: Math.max(1, max) });
  }

  get size(): number {
    return this.#cache.size;
  }

  get(key: K): V | undefined {
    const v = this.#cache.get(key);
    if (v === undefined) this.misses++;
    else this.hits++;
    return v;
  }

  set(key: K, value: V): void {
    this.#cache.set(key, value);
  }

  clear(): void {
    this.#cache.clear();
  }
}
