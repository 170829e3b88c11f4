// Which policy connections live at an IP address and port. The agent resolves a host name and dials
// the address; the sidecar sees only the address, so it resolves every host name the policy names
// (targets and aliases) the same way (getaddrinfo, all addresses) and indexes the answers. Answers
// are kept for a TTL and refreshed in the background, on every policy change, and on demand when a
// captured address is unknown (rate-limited), so rotating DNS answers do not turn into denials.
// A name that stops resolving keeps its last known addresses until the policy drops it.
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Logger } from "pino";
import type { PolicySet } from "../policy/compile.ts";

export type Resolver = (host: string) => Promise<readonly string[]>;

/** getaddrinfo through Node (what the agent's clients use too): every address, both families. */
export const lookupAll: Resolver = async (host) =>
  (await lookup(host, { all: true, order: "verbatim" })).map((a) => a.address);

/** One spelling per address: lower case, IPv6 compressed, IPv4-mapped IPv6 as IPv4. */
export function canonicalIp(address: string): string {
  const a = address.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped?.[1]) return mapped[1];
  if (isIP(a) === 6) return new URL(`http://[${a}]/`).hostname.slice(1, -1);
  return a;
}

export interface AddressMapOptions {
  resolve?: Resolver;
  /** How long resolved addresses are trusted before a background refresh (default 30 s). */
  ttlMs?: number;
  /** Per-name resolution timeout (default 5 s). */
  resolveTimeoutMs?: number;
  logger?: Logger;
}

export interface AddressMap {
  /** Names of the connections whose target or aliases are (or resolve to) `ip` on `port`. */
  lookup(ip: string, port: number): readonly string[];
  /** Re-resolves the names of `set` (or of the last set given); concurrent calls share the work. */
  refresh(set?: PolicySet): Promise<void>;
  /** Milliseconds since the last completed refresh (Infinity before the first). */
  age(): number;
  /** Resolved addresses by host name, for diagnostics. */
  snapshot(): Record<string, readonly string[]>;
  start(): void;
  stop(): void;
}

const key = (ip: string, port: number) => `${canonicalIp(ip)}|${port}`;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export function createAddressMap(initial: PolicySet, opts: AddressMapOptions = {}): AddressMap {
  const resolve = opts.resolve ?? lookupAll;
  const ttlMs = opts.ttlMs ?? 30_000;
  const resolveTimeoutMs = opts.resolveTimeoutMs ?? 5_000;
  let set = initial;
  let resolved = new Map<string, readonly string[]>();
  let index = new Map<string, string[]>();
  let refreshedAt = Number.NEGATIVE_INFINITY;
  let inflight: Promise<void> | undefined;
  let again = false;
  let timer: NodeJS.Timeout | undefined;

  function rebuild() {
    const next = new Map<string, string[]>();
    for (const conn of set.connections.values()) {
      const { host, port, aliases } = conn.spec.target;
      for (const name of [host, ...(aliases ?? [])]) {
        const n = name.toLowerCase();
        const ips = isIP(n) ? [n] : (resolved.get(n) ?? []);
        for (const ip of ips) {
          const k = key(ip, port);
          const list = next.get(k) ?? [];
          if (!list.includes(conn.spec.name)) list.push(conn.spec.name);
          next.set(k, list);
        }
      }
    }
    index = next;
  }

  function hostNames(s: PolicySet): string[] {
    const names = new Set<string>();
    for (const conn of s.connections.values())
      for (const name of [conn.spec.target.host, ...(conn.spec.target.aliases ?? [])])
        if (!isIP(name)) names.add(name.toLowerCase());
    return [...names];
  }

  async function runOnce(): Promise<void> {
    const names = hostNames(set);
    const next = new Map<string, readonly string[]>();
    await Promise.all(
      names.map(async (name) => {
        try {
          const ips = await withTimeout(resolve(name), resolveTimeoutMs, `resolving ${name}`);
          next.set(name, [...new Set(ips.map(canonicalIp))]);
        } catch (err) {
          const previous = resolved.get(name);
          if (previous) next.set(name, previous);
          opts.logger?.warn(
            { host: name, kept: previous ?? [], err: err instanceof Error ? err.message : String(err) },
            "policy target does not resolve; keeping the last known addresses",
          );
        }
      }),
    );
    resolved = next;
    refreshedAt = performance.now();
    rebuild();
  }

  function refresh(newSet?: PolicySet): Promise<void> {
    if (newSet) {
      set = newSet;
      rebuild(); // literal addresses of the new set apply at once
    }
    if (inflight) {
      if (newSet) again = true;
      return inflight;
    }
    inflight = (async () => {
      do {
        again = false;
        await runOnce();
      } while (again);
    })().finally(() => {
      inflight = undefined;
    });
    return inflight;
  }

  rebuild();
  return {
    lookup: (ip, port) => index.get(key(ip, port)) ?? [],
    refresh,
    age: () => performance.now() - refreshedAt,
    snapshot: () => Object.fromEntries(resolved),
    start() {
      timer ??= setInterval(() => void refresh().catch(() => {}), ttlMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}
