// List + watch of one kind of object, with a cache: what the sidecar needs of its policies and its
// AccessRequests. A watch resumes from the last resourceVersion it saw (bookmarks keep it fresh);
// when the server says that version is gone (410) the informer lists again and reports the
// difference as adds, updates and deletes. Any other failure is reported once as "error" and the
// informer stops: the owner decides when to start it again (with backoff).
import type { KubeClient, WatchEvent } from "./client.ts";
import { KubeApiError } from "./client.ts";

export interface KubeObject {
  metadata: { name?: string; namespace?: string; resourceVersion?: string; uid?: string };
}

interface ObjectList<T> {
  metadata?: { resourceVersion?: string };
  items?: T[];
}

export type InformerEvent = "add" | "update" | "delete";

export interface Informer<T extends KubeObject> {
  list(): T[];
  on(event: InformerEvent, fn: (obj: T) => void): void;
  on(event: "error", fn: (err: unknown) => void): void;
  /** Called after each successful list, before its adds/updates/deletes are reported. */
  onListed(fn: () => void): void;
  /** Lists, then watches in the background; resolves after the list. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

// The server ends each watch after at most this long; the informer resumes at once.
const WATCH_SECONDS = 300;

export function createInformer<T extends KubeObject>(
  client: KubeClient,
  path: string,
  opts: { labelSelector?: string; listTimeoutMs?: number } = {},
): Informer<T> {
  const cache = new Map<string, T>();
  const handlers: Record<InformerEvent | "error", ((x: never) => void)[]> = {
    add: [],
    update: [],
    delete: [],
    error: [],
  };
  const listed: (() => void)[] = [];
  let abort: AbortController | undefined;
  let version = "";
  const fire = (event: InformerEvent | "error", x: unknown) => {
    for (const h of handlers[event]) (h as (y: unknown) => void)(x);
  };
  const key = (o: T) => o.metadata.name ?? "";

  async function relist(): Promise<void> {
    const result = await client.request<ObjectList<T>>("GET", path, {
      query: { labelSelector: opts.labelSelector },
      timeoutMs: opts.listTimeoutMs ?? 10_000,
    });
    version = result.metadata?.resourceVersion ?? "";
    for (const f of listed) f();
    const seen = new Set<string>();
    for (const o of result.items ?? []) {
      const k = key(o);
      seen.add(k);
      const before = cache.get(k);
      cache.set(k, o);
      if (!before) fire("add", o);
      else if (before.metadata.resourceVersion !== o.metadata.resourceVersion) fire("update", o);
    }
    for (const [k, o] of cache)
      if (!seen.has(k)) {
        cache.delete(k);
        fire("delete", o);
      }
  }

  function apply(e: WatchEvent<T>): void {
    if (e.type === "ERROR") {
      const status = e.object as unknown as { code?: number; message?: string };
      throw new KubeApiError(status.code ?? 500, status.message ?? "watch error");
    }
    const rv = e.object.metadata?.resourceVersion;
    if (rv) version = rv;
    if (e.type === "BOOKMARK") return;
    const k = key(e.object);
    if (e.type === "DELETED") {
      cache.delete(k);
      fire("delete", e.object);
    } else {
      const had = cache.has(k);
      cache.set(k, e.object);
      fire(had ? "update" : "add", e.object);
    }
  }

  async function watchLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await client.watch<T>(
          path,
          {
            labelSelector: opts.labelSelector,
            resourceVersion: version,
            allowWatchBookmarks: "true",
            timeoutSeconds: String(WATCH_SECONDS),
          },
          apply,
          signal,
        );
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof KubeApiError && err.status === 410) {
          await relist();
          continue;
        }
        throw err;
      }
    }
  }

  return {
    list: () => [...cache.values()],
    on(event: InformerEvent | "error", fn: (x: never) => void) {
      handlers[event].push(fn);
    },
    onListed(fn) {
      listed.push(fn);
    },
    async start() {
      abort?.abort();
      const controller = new AbortController();
      abort = controller;
      try {
        await relist();
      } catch (err) {
        fire("error", err);
        throw err;
      }
      void watchLoop(controller.signal).catch((err: unknown) => {
        if (!controller.signal.aborted) fire("error", err);
      });
    },
    async stop() {
      abort?.abort();
      abort = undefined;
    },
  };
}
