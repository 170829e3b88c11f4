// One credential for every request of a connection (HTTP and MCP from Vault KV): read through the
// underlying source at first use, used for `refreshMs`, then read again. A Vault login and read per
// request would put Vault on every request's path; Vault Agent's static-secret rendering works
// the same way (re-read on an interval, rotated values picked up within it).
//
// When a re-read fails, the last value keeps serving for one more period (a Vault restart or a
// leader election must not take every agent request down), with re-reads spaced by `retryMs`;
// past that the source fails and requests are refused. Concurrent requests that find the value
// due share one read.
import type { Logger } from "pino";
import { type CredentialSource, type HeldCredential, heldFields } from "./source.ts";

export interface RefreshingOptions {
  connection: string;
  refreshMs: number;
  /** Delay between re-reads while a refresh keeps failing. */
  retryMs?: number;
  logger: Logger;
  now?: () => number;
}

interface Cached {
  held: HeldCredential;
  keys: readonly string[];
  readAt: number;
}

export function refreshingSource(inner: CredentialSource, opts: RefreshingOptions): CredentialSource {
  const now = opts.now ?? Date.now;
  const retryMs = opts.retryMs ?? Math.min(5_000, opts.refreshMs / 10);
  let cached: Cached | undefined;
  let reading: Promise<Cached> | undefined;
  let nextAttempt = 0;

  // A view of the shared credential: releasing it does not end the shared hold.
  const view = (c: Cached): HeldCredential => {
    const fields = new Map(c.keys.map((k) => [k, c.held.get(k)] as const));
    return heldFields(fields, { ...c.held.audit }, `connection ${opts.connection} credential`);
  };

  const read = (keys: readonly string[], session: string): Promise<Cached> => {
    reading ??= inner
      .acquire({ session, keys })
      .then((held) => {
        const previous = cached;
        cached = { held, keys: [...keys], readAt: now() };
        previous?.held.release();
        return cached;
      })
      .finally(() => {
        reading = undefined;
      });
    return reading;
  };

  return {
    kind: inner.kind,
    async acquire(req) {
      const t = now();
      const covers = cached !== undefined && req.keys.every((k) => cached?.keys.includes(k));
      if (cached && covers && t < cached.readAt + opts.refreshMs) return view(cached);
      const keys = cached && !covers ? [...new Set([...cached.keys, ...req.keys])] : req.keys;
      const stale = cached && covers && t < cached.readAt + 2 * opts.refreshMs ? cached : undefined;
      if (stale && t < nextAttempt) return view(stale);
      try {
        return view(await read(keys, req.session));
      } catch (err) {
        if (!stale) throw err;
        nextAttempt = now() + retryMs;
        opts.logger.warn(
          {
            connection: opts.connection,
            err: (err as Error).message,
            servingUntil: new Date(stale.readAt + 2 * opts.refreshMs).toISOString(),
          },
          "credential re-read failed; serving the last value until the grace period ends",
        );
        return view(stale);
      }
    },
  };
}
