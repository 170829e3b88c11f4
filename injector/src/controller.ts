// The policy controller, in the injector process: watches AgentAccessPolicies and Secrets,
// checks each policy's references, and writes status (Ready condition, observedGeneration, the
// printer-column fields) through the status subresource, plus an Event when Ready changes. Its
// policy cache is also what the webhook consults to know which Secrets to mount.
import { hostname } from "node:os";
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  type Informer,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  makeInformer,
  type ObjectCache,
  type V1Secret,
} from "@kubernetes/client-node";
import { type AgentAccessPolicy, GROUP, VERSION } from "../../api/src/index.ts";
import type { InjectorMetrics } from "./metrics.ts";
import { type PolicySource, policySecretKeys } from "./policies.ts";
import { desiredStatus, type Evaluation, evaluatePolicy, statusEqual } from "./references.ts";

const PLURAL = "agentaccesspolicies";
const COMPONENT = "airlock-policy-controller";

export interface PolicyControllerOptions {
  kubeConfig: KubeConfig;
  /** Watch only these namespaces; default all. */
  namespaces?: readonly string[];
  metrics?: InjectorMetrics;
  log?: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
  /** Re-evaluate every policy this often even without events; default 5 minutes. */
  resyncMs?: number;
}

export interface PolicyController extends PolicySource {
  /** Starts the informers; resolves once both caches hold a full list. */
  start(): Promise<void>;
  stop(): Promise<void>;
  synced(): boolean;
  /** Resolves when no work is queued or running (tests). */
  idle(): Promise<void>;
  /** The last evaluation of a policy (tests, debugging). */
  evaluation(namespace: string, name: string): Evaluation | undefined;
}

type Cache<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;

interface Scope {
  policies: Cache<AgentAccessPolicy & KubernetesObject>;
  secrets: Cache<V1Secret>;
  /** Whether each informer has completed a list (a failed list leaves the cache incomplete). */
  listed: { policies: boolean; secrets: boolean };
  /** Next restart delay of each informer after an error. */
  backoff: { policies: number; secrets: number };
}

/** One line for a log: ApiException messages carry the whole response, headers included. */
export function describeError(err: unknown): string {
  if (err instanceof ApiException) {
    let detail = "";
    try {
      detail = (JSON.parse(String(err.body)) as { message?: string }).message ?? "";
    } catch {
      detail = String(err.body ?? "").slice(0, 200);
    }
    return `HTTP ${err.code}${detail ? `: ${detail}` : ""}`;
  }
  return err instanceof Error ? err.message : String(err);
}

const noopLog = { info: () => {}, warn: () => {}, error: () => {} };

function statusCode(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

export function createPolicyController(opts: PolicyControllerOptions): PolicyController {
  const log = opts.log ?? noopLog;
  const custom = opts.kubeConfig.makeApiClient(CustomObjectsApi);
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const namespaces = opts.namespaces?.length ? [...opts.namespaces] : [undefined];

  const scopes: Scope[] = namespaces.map((ns) => {
    const policyPath = ns
      ? `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`
      : `/apis/${GROUP}/${VERSION}/${PLURAL}`;
    const secretPath = ns ? `/api/v1/namespaces/${ns}/secrets` : "/api/v1/secrets";
    const listed = { policies: false, secrets: false };
    const backoff = { policies: 1000, secrets: 1000 };
    const listPolicies = async () => {
      const list = (
        ns
          ? await custom.listNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: ns,
              plural: PLURAL,
            })
          : await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })
      ) as KubernetesListObject<AgentAccessPolicy & KubernetesObject>;
      listed.policies = true;
      backoff.policies = 1000;
      return list;
    };
    const listSecrets = async () => {
      const list = ns
        ? await core.listNamespacedSecret({ namespace: ns })
        : await core.listSecretForAllNamespaces();
      listed.secrets = true;
      backoff.secrets = 1000;
      return list;
    };
    return {
      policies: makeInformer(opts.kubeConfig, policyPath, listPolicies),
      secrets: makeInformer(opts.kubeConfig, secretPath, listSecrets),
      listed,
      backoff,
    };
  });

  const scopeFor = (namespace: string): Scope | undefined =>
    opts.namespaces?.length ? scopes[opts.namespaces.indexOf(namespace)] : scopes[0];

  const evaluations = new Map<string, Evaluation>();
  const queue = new Set<string>();
  const retries = new Map<string, number>();
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let resync: NodeJS.Timeout | undefined;
  let stopped = false;
  let isSynced = false;
  const restartTimers = new Set<NodeJS.Timeout>();

  const key = (ns: string, name: string) => `${ns}/${name}`;

  function schedule(delayMs = 20): void {
    if (stopped || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      running ??= drain().finally(() => {
        running = undefined;
        if (queue.size) schedule();
      });
    }, delayMs);
  }

  function enqueue(ns: string | undefined, name: string | undefined): void {
    if (!ns || !name) return;
    queue.add(key(ns, name));
    schedule();
  }

  function enqueueAll(): void {
    for (const s of scopes)
      for (const p of s.policies.list()) enqueue(p.metadata?.namespace, p.metadata?.name);
  }

  function secretKeys(scope: Scope, ns: string) {
    return (name: string) => {
      const s = scope.secrets.get(name, ns);
      if (!s) return undefined;
      return [...Object.keys(s.data ?? {}), ...Object.keys(s.stringData ?? {})];
    };
  }

  function updatePolicyGauge(): void {
    if (!opts.metrics) return;
    let ready = 0;
    let notReady = 0;
    for (const e of evaluations.values()) e.ready ? ready++ : notReady++;
    opts.metrics.policies.set({ ready: "true" }, ready);
    opts.metrics.policies.set({ ready: "false" }, notReady);
  }

  async function emitEvent(policy: AgentAccessPolicy, evaluation: Evaluation): Promise<void> {
    const ns = policy.metadata.namespace ?? "default";
    const now = new Date();
    try {
      await core.createNamespacedEvent({
        namespace: ns,
        body: {
          metadata: {
            name: `${policy.metadata.name}.${now.getTime().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`,
            namespace: ns,
          },
          involvedObject: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: "AgentAccessPolicy",
            name: policy.metadata.name,
            namespace: ns,
            uid: policy.metadata.uid,
            resourceVersion: policy.metadata.resourceVersion,
          },
          reason: evaluation.reason,
          message: evaluation.message,
          type: evaluation.ready ? "Normal" : "Warning",
          source: { component: COMPONENT },
          reportingComponent: `${GROUP}/policy-controller`,
          reportingInstance: hostname(),
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (err) {
      log.warn(
        { err: describeError(err), policy: `${ns}/${policy.metadata.name}` },
        "could not record an Event",
      );
    }
  }

  async function reconcile(k: string): Promise<void> {
    const [ns = "", name = ""] = k.split("/");
    const scope = scopeFor(ns);
    const policy = scope?.policies.get(name, ns);
    if (!scope || !policy) {
      evaluations.delete(k);
      return;
    }
    const evaluation = evaluatePolicy(policy, secretKeys(scope, ns));
    evaluations.set(k, evaluation);
    const status = desiredStatus(policy, evaluation);
    if (statusEqual(policy.status, status)) return;
    const before = policy.status?.conditions?.find((c) => c.type === "Ready");
    try {
      await custom.replaceNamespacedCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        name,
        body: { ...policy, status },
      });
      opts.metrics?.statusWrites.inc({ result: "success" });
    } catch (err) {
      const code = statusCode(err);
      if (code === 404) return;
      // 409: the cache is behind; the watch brings the newer object, then we try again.
      opts.metrics?.statusWrites.inc({ result: code === 409 ? "conflict" : "error" });
      throw err;
    }
    if (before?.status !== (evaluation.ready ? "True" : "False") || before?.reason !== evaluation.reason) {
      log.info({ policy: k, reason: evaluation.reason, ready: evaluation.ready }, evaluation.message);
      await emitEvent(policy, evaluation);
    }
  }

  async function drain(): Promise<void> {
    while (queue.size && !stopped) {
      const batch = [...queue];
      queue.clear();
      for (const k of batch) {
        try {
          await reconcile(k);
          retries.delete(k);
        } catch (err) {
          const n = (retries.get(k) ?? 0) + 1;
          retries.set(k, n);
          if (statusCode(err) !== 409)
            log.warn({ err: describeError(err), policy: k, attempt: n }, "policy status update failed");
          const delay = Math.min(30_000, 250 * 2 ** Math.min(n, 7));
          const t = setTimeout(() => {
            restartTimers.delete(t);
            enqueue(...(k.split("/") as [string, string]));
          }, delay);
          restartTimers.add(t);
        }
      }
      updatePolicyGauge();
    }
  }

  for (const scope of scopes) {
    const onPolicy = (p: AgentAccessPolicy & KubernetesObject) =>
      enqueue(p.metadata?.namespace, p.metadata?.name);
    scope.policies.on("add", onPolicy);
    scope.policies.on("update", onPolicy);
    scope.policies.on("delete", (p) => {
      evaluations.delete(key(p.metadata?.namespace ?? "", p.metadata?.name ?? ""));
      updatePolicyGauge();
    });
    const onSecret = (s: V1Secret) => {
      const ns = s.metadata?.namespace;
      if (!ns) return;
      for (const p of scope.policies.list(ns))
        if (policySecretKeys(p).some((r) => r.secret === s.metadata?.name)) enqueue(ns, p.metadata?.name);
    };
    scope.secrets.on("add", onSecret);
    scope.secrets.on("update", onSecret);
    scope.secrets.on("delete", onSecret);
    // client-node informers stop on a watch error: restart them, backing off 1 s → 30 s while
    // failures repeat (a missing CRD, RBAC not granted yet), from 1 s again after a good list.
    for (const [what, inf] of [
      ["policies", scope.policies],
      ["secrets", scope.secrets],
    ] as const) {
      inf.on("error", (err: unknown) => {
        if (stopped) return;
        const delay = scope.backoff[what];
        log.warn(
          { err: describeError(err), informer: what, retryInMs: delay },
          "list/watch failed; restarting",
        );
        const t = setTimeout(() => {
          restartTimers.delete(t);
          if (!stopped) inf.start().catch(() => {});
        }, delay);
        scope.backoff[what] = Math.min(30_000, delay * 2);
        restartTimers.add(t);
      });
    }
  }

  return {
    policies(namespace) {
      return (scopeFor(namespace)?.policies.list(namespace) ?? []) as AgentAccessPolicy[];
    },
    async start() {
      stopped = false;
      // start() lists before it returns, so the caches are complete afterwards.
      // start() lists before it returns; a list that failed (e.g. 429 while a new CRD's storage
      // initializes, 403 before RBAC lands) is retried by the error handler: wait for all.
      await Promise.all(scopes.flatMap((s) => [s.secrets.start(), s.policies.start()]));
      while (!stopped && !scopes.every((s) => s.listed.policies && s.listed.secrets))
        await new Promise((r) => setTimeout(r, 50));
      if (stopped) return;
      isSynced = true;
      enqueueAll();
      const every = opts.resyncMs ?? 300_000;
      resync = setInterval(enqueueAll, every);
      resync.unref();
    },
    async stop() {
      stopped = true;
      isSynced = false;
      clearTimeout(timer);
      timer = undefined;
      if (resync) clearInterval(resync);
      for (const t of restartTimers) clearTimeout(t);
      restartTimers.clear();
      await Promise.all(scopes.flatMap((s) => [s.secrets.stop(), s.policies.stop()]));
      await running;
    },
    synced: () => isSynced,
    async idle() {
      for (;;) {
        if (timer || running || queue.size) {
          await (running ?? new Promise((r) => setTimeout(r, 25)));
          continue;
        }
        return;
      }
    },
    evaluation: (namespace, name) => evaluations.get(key(namespace, name)),
  };
}
