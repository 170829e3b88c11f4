// AccessRequests in the Kubernetes API. An informer (list + watch, label-selected to this pod's
// requests) keeps a cache and reports changes; while the API server is unreachable it retries with
// backoff, `connected()` is false, and the approval service fails held operations closed at their
// timeout. Every call has a client-side timeout so nothing on the data path waits forever.
import type { Logger } from "pino";
import { type AccessRequest, type AccessRequestStatus, GROUP, VERSION } from "../../../api/src/index.ts";
import { KubeApiError, type KubeClient } from "../kube/client.ts";
import { createInformer } from "../kube/informer.ts";
import { keepRunning } from "../kube/keep-running.ts";
import { LABELS, MANAGED_BY, podLabel } from "./request.ts";
import { type ApprovalStore, ConflictError, RejectedError, type StoreEvent } from "./store.ts";

export const PLURAL = "accessrequests";

export interface KubernetesStoreOptions {
  kube: KubeClient;
  namespace: string;
  podName: string;
  logger: Logger;
  /** Client-side timeout of each API call (default 10 s). */
  requestTimeoutMs?: number;
  /** Backoff after a watch error, doubling up to maxBackoffMs (defaults 500 ms, 30 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/** The API server's own message (its Status), or what failed on the way. */
export function apiMessage(err: unknown): string {
  if (err instanceof KubeApiError) return err.message;
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return cause?.code ? `${err.message} (${cause.code})` : err.message;
  }
  return String(err);
}

/** Maps API errors onto the store's error types; transient failures pass through unchanged. */
function classify(err: unknown, what: string): unknown {
  if (!(err instanceof KubeApiError)) return err;
  if (err.status === 409) return new ConflictError(`${what}: ${apiMessage(err)}`);
  if (err.status >= 400 && err.status < 500 && err.status !== 429 && err.status !== 408)
    return new RejectedError(err.status, `${what}: ${apiMessage(err)}`);
  return err;
}

export function createKubernetesStore(opts: KubernetesStoreOptions): ApprovalStore {
  const kube = opts.kube;
  const timeoutMs = opts.requestTimeoutMs ?? 10_000;
  const ns = opts.namespace;
  const collection = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
  const item = (name: string) => `${collection}/${encodeURIComponent(name)}`;
  const labelSelector = `${LABELS.managedBy}=${MANAGED_BY},${LABELS.pod}=${podLabel(opts.podName)}`;
  const listeners = new Set<(obj: AccessRequest, event: StoreEvent) => void>();
  let connected = false;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => {
    markReady = r;
  });

  const informer = createInformer<AccessRequest>(kube, collection, {
    labelSelector,
    listTimeoutMs: timeoutMs,
  });
  informer.onListed(() => {
    connected = true;
    // The informer reports the listed items right after this; ready follows them.
    setImmediate(markReady);
  });
  const emit = (event: StoreEvent) => (obj: AccessRequest) => {
    for (const l of listeners) {
      try {
        l(obj, event);
      } catch (err) {
        opts.logger.error({ err: (err as Error).message }, "approval store listener failed");
      }
    }
  };
  informer.on("add", emit("upsert"));
  informer.on("update", emit("upsert"));
  informer.on("delete", emit("delete"));
  informer.on("error", () => {
    connected = false;
  });
  const running = keepRunning(informer, opts, (err, retryInMs) =>
    opts.logger.warn(
      { err: apiMessage(err), retryInMs },
      "AccessRequest watch failed; held operations fail closed at their timeout until it is back",
    ),
  );

  return {
    kind: "kubernetes",
    namespace: ns,
    ready,
    connected: () => connected,
    async create(obj) {
      try {
        return await kube.request<AccessRequest>("POST", collection, { body: obj, timeoutMs });
      } catch (err) {
        throw classify(err, `create AccessRequest ${obj.metadata.name}`);
      }
    },
    async get(name) {
      try {
        return await kube.request<AccessRequest>("GET", item(name), { timeoutMs });
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 404) return undefined;
        throw classify(err, `get AccessRequest ${name}`);
      }
    },
    list: () => informer.list(),
    async patchStatus(name, status: Partial<AccessRequestStatus>, resourceVersion) {
      const body = { ...(resourceVersion ? { metadata: { resourceVersion } } : {}), status };
      try {
        return await kube.request<AccessRequest>("PATCH", `${item(name)}/status`, {
          body,
          contentType: "application/merge-patch+json",
          timeoutMs,
        });
      } catch (err) {
        throw classify(err, `patch AccessRequest ${name} status`);
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      running.stop();
      listeners.clear();
      await informer.stop();
    },
  };
}
