// Kubernetes policy source: an informer on AgentAccessPolicy in the pod's own namespace. Policies
// whose podSelector matches this pod's labels are compiled and swapped in atomically. While the
// API server is unreachable the informer retries with backoff and the last good set stays in
// force (fail closed: never an empty or partial policy because of an outage).
import type { Logger } from "pino";
import { type AgentAccessPolicy, GROUP, VERSION } from "../../../api/src/index.ts";
import type { KubeClient } from "../kube/client.ts";
import { createInformer } from "../kube/informer.ts";
import { keepRunning } from "../kube/keep-running.ts";
import { selectorMatches } from "../policy/selector.ts";
import type { PolicyStore } from "../runtime/policy-store.ts";
import type { Metrics } from "../telemetry/metrics.ts";

export interface KubernetesSourceOptions {
  kube: KubeClient;
  namespace: string;
  podLabels: Readonly<Record<string, string>>;
  store: PolicyStore;
  logger: Logger;
  metrics?: Metrics;
  /** Backoff after a watch error, doubling up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface KubernetesSource {
  /** Resolves once the first list has been applied. */
  synced: Promise<void>;
  stop(): Promise<void>;
}

export function startKubernetesSource(opts: KubernetesSourceOptions): KubernetesSource {
  const path = `/apis/${GROUP}/${VERSION}/namespaces/${opts.namespace}/agentaccesspolicies`;
  let markSynced: () => void;
  const synced = new Promise<void>((r) => {
    markSynced = r;
  });

  // A successful list is the proof of connectivity; its items are reported right after.
  const informer = createInformer<AgentAccessPolicy>(opts.kube, path);
  informer.onListed(() => {
    opts.metrics?.policySourceUp.set(1);
    schedule(markSynced);
  });

  // Events arrive one object at a time, including the burst after a (re)list: coalesce them so the
  // store only ever sees the complete cache, and skip swaps that would change nothing.
  let applied = "";
  let pending: NodeJS.Immediate | undefined;
  const after: (() => void)[] = [];
  function schedule(then?: () => void) {
    if (then) after.push(then);
    pending ??= setImmediate(() => {
      pending = undefined;
      const selected = informer.list().filter((p) => selectorMatches(p.spec?.podSelector, opts.podLabels));
      const fingerprint = selected
        .map((p) => `${p.metadata.uid}@${p.metadata.resourceVersion}`)
        .sort()
        .join(",");
      if (fingerprint !== applied) {
        applied = fingerprint;
        opts.store.update(selected);
      }
      for (const f of after.splice(0)) f();
    });
  }
  for (const event of ["add", "update", "delete"] as const) informer.on(event, () => schedule());
  informer.on("error", () => {
    opts.metrics?.policySourceUp.set(0);
    opts.metrics?.policyReloads.inc({ result: "error" });
  });
  const running = keepRunning(informer, opts, (err, retryInMs) =>
    opts.logger.warn(
      { err: err instanceof Error ? err.message : String(err), retryInMs },
      "policy watch failed; keeping the last good policy set",
    ),
  );

  return {
    synced,
    async stop() {
      running.stop();
      if (pending) clearImmediate(pending);
      await informer.stop();
    },
  };
}
