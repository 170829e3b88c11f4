// A bounded map with approximate least-recently-used eviction, in two generations: new entries
// and hits go to the young map; when it is full the old map is dropped and the young one becomes
// old. A hit in the young map is one Map lookup — no delete and re-insert per hit, which cost
// more than the lookup itself on the per-statement path — and an entry survives as long as it is
// used at least once per half-capacity of inserts.
export class Lru<K, V> {
  readonly #half: number;
  #young = new Map<K, V>();
  #old = new Map<K, V>();
  hits = 0;
  misses = 0;

  constructor(max: number) {
    this.#half = Math.max(1, Math.floor(max / 2));
  }

  /** Entries held (an entry promoted from the old generation may be counted twice until it ages). */
  get size(): number {
    return this.#young.size + this.#old.size;
  }

  get(key: K): V | undefined {
    let v = this.#young.get(key);
    if (v === undefined) {
      v = this.#old.get(key);
      if (v === undefined) {
        this.misses++;
        return undefined;
      }
      this.#insert(key, v);
    }
    this.hits++;
    return v;
  }

  set(key: K, value: V): void {
    if (this.#young.has(key)) this.#young.set(key, value);
    else this.#insert(key, value);
    this.#old.delete(key);
  }

  #insert(key: K, value: V): void {
    if (this.#young.size >= this.#half) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(key, value);
  }

  clear(): void {
    this.#young.clear();
    this.#old.clear();
  }
}
