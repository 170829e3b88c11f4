// AccessRequests in the Kubernetes API. An informer (list + watch, label-selected to this pod's
// requests) keeps a cache and reports changes; while the API server is unreachable it retries with
// backoff, `connected()` is false, and the approval service fails held operations closed at their
// timeout. Every call has a client-side timeout so nothing on the data path waits forever.
import {
  ApiException,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { type AccessRequest, type AccessRequestStatus, GROUP, VERSION } from "../../../api/src/index.ts";
import { LABELS, MANAGED_BY, podLabel } from "./request.ts";
import { type ApprovalStore, ConflictError, RejectedError, type StoreEvent } from "./store.ts";

export const PLURAL = "accessrequests";

export interface KubernetesStoreOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  podName: string;
  logger: Logger;
  /** Client-side timeout of each API call (default 10 s). */
  requestTimeoutMs?: number;
  /** Backoff after a watch error, doubling up to maxBackoffMs (defaults 500 ms, 30 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export class TimeoutError extends Error {
  override readonly name = "TimeoutError";
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The API server's own message from an ApiException body (JSON Status or text). */
export function apiMessage(err: unknown): string {
  if (err instanceof ApiException) {
    let body: unknown = err.body;
    if (typeof body === "string") {
      const text: string = body;
      try {
        body = JSON.parse(text);
      } catch {
        return text.trim() || `HTTP ${err.code}`;
      }
    }
    const message = (body as { message?: unknown } | undefined)?.message;
    return typeof message === "string" ? message : `HTTP ${err.code}`;
  }
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return cause?.code ? `${err.message} (${cause.code})` : err.message;
  }
  return String(err);
}

/** Maps API errors onto the store's error types; transient failures pass through unchanged. */
function classify(err: unknown, what: string): unknown {
  if (!(err instanceof ApiException)) return err;
  if (err.code === 409) return new ConflictError(`${what}: ${apiMessage(err)}`);
  if (err.code >= 400 && err.code < 500 && err.code !== 429 && err.code !== 408)
    return new RejectedError(err.code, `${what}: ${apiMessage(err)}`);
  return err;
}

export function createKubernetesStore(opts: KubernetesStoreOptions): ApprovalStore {
  const api = opts.kubeConfig.makeApiClient(CustomObjectsApi);
  const timeoutMs = opts.requestTimeoutMs ?? 10_000;
  const ns = opts.namespace;
  const base = { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL };
  const labelSelector = `${LABELS.managedBy}=${MANAGED_BY},${LABELS.pod}=${podLabel(opts.podName)}`;
  const listeners = new Set<(obj: AccessRequest, event: StoreEvent) => void>();
  let connected = false;
  let stopped = false;
  let backoff = opts.initialBackoffMs ?? 500;
  let retry: NodeJS.Timeout | undefined;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => {
    markReady = r;
  });

  const list = async () => {
    const result = (await withTimeout(
      api.listNamespacedCustomObject({ ...base, labelSelector }),
      timeoutMs,
      "list AccessRequests",
    )) as KubernetesListObject<AccessRequest>;
    connected = true;
    backoff = opts.initialBackoffMs ?? 500;
    // The informer adds the listed items right after this resolves; ready follows them.
    setImmediate(markReady);
    return result;
  };
  const informer = makeInformer<AccessRequest>(
    opts.kubeConfig,
    `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`,
    list,
    labelSelector,
  );
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
  informer.on("error", (err: unknown) => {
    connected = false;
    if (stopped) return;
    opts.logger.warn(
      { err: apiMessage(err), retryInMs: backoff },
      "AccessRequest watch failed; held operations fail closed at their timeout until it is back",
    );
    clearTimeout(retry);
    retry = setTimeout(() => {
      if (!stopped) void informer.start().catch(() => {});
    }, backoff);
    backoff = Math.min(backoff * 2, opts.maxBackoffMs ?? 30_000);
  });
  void informer.start().catch(() => {});

  return {
    kind: "kubernetes",
    namespace: ns,
    ready,
    connected: () => connected,
    async create(obj) {
      try {
        return (await withTimeout(
          api.createNamespacedCustomObject({ ...base, body: obj }),
          timeoutMs,
          "create AccessRequest",
        )) as AccessRequest;
      } catch (err) {
        throw classify(err, `create AccessRequest ${obj.metadata.name}`);
      }
    },
    async get(name) {
      try {
        return (await withTimeout(
          api.getNamespacedCustomObject({ ...base, name }),
          timeoutMs,
          `get AccessRequest ${name}`,
        )) as AccessRequest;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return undefined;
        throw classify(err, `get AccessRequest ${name}`);
      }
    },
    list: () => [...informer.list(ns)],
    async patchStatus(name, status: Partial<AccessRequestStatus>, resourceVersion) {
      const body = { ...(resourceVersion ? { metadata: { resourceVersion } } : {}), status };
      try {
        return (await withTimeout(
          api.patchNamespacedCustomObjectStatus(
            { ...base, name, body },
            setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
          ),
          timeoutMs,
          `patch AccessRequest ${name} status`,
        )) as AccessRequest;
      } catch (err) {
        throw classify(err, `patch AccessRequest ${name} status`);
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      stopped = true;
      clearTimeout(retry);
      listeners.clear();
      await informer.stop();
    },
  };
}
