// Composes a running sidecar: policy source → policy store → protocol handlers and listeners,
// plus the admin port. The same composition serves Kubernetes pods (`--kubernetes`), the
// standalone demo and the tests; only where policies, identity and secrets come from differs.

import { mkdirSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import { startAdminServer } from "./admin/server.ts";
import { setupApprovals } from "./approvals/index.ts";
import { type AuditSink, createAuditSink } from "./audit/sink.ts";
import { createCredentialSources } from "./credentials/index.ts";
import { loadWorkloadIdentity, serviceAccountSubject, type WorkloadIdentity } from "./identity/index.ts";
import { accessFromKubeConfig, inClusterAccess, type KubeConfigLike } from "./kube/access.ts";
import { createKubeClient, type KubeClient } from "./kube/client.ts";
import { type ListenerSet, startListenerSet } from "./listeners.ts";
import { loadOrCreateHashKey } from "./masking/index.ts";
import type { ConnectionHandler } from "./protocols/handler.ts";
import { type ApprovalGate, createHttpGuard } from "./protocols/http/index.ts";
import { startPodCaKeeper } from "./protocols/http/tls/pod-ca-keeper.ts";
import { TRUST_BUNDLE_ENV } from "./protocols/http/tls/trust-bundle.ts";
import { type LazyHandler, lazyHandler } from "./protocols/lazy.ts";
import type { PostgresGuard } from "./protocols/postgres/index.ts";
import type { SshGuard } from "./protocols/ssh/index.ts";
import { recordingAuditSink } from "./recording/audit-tee.ts";
import { createRecorder, recordingSettingsFrom, withPolicyObjects } from "./recording/index.ts";
import type { SidecarContext } from "./runtime/context.ts";
import { createPolicyStore } from "./runtime/policy-store.ts";
import { createSecretStore, DEFAULT_SECRETS_DIR } from "./runtime/secrets.ts";
import { createVerifierCache } from "./runtime/verifiers.ts";
import { startFileSource } from "./sources/files.ts";
import { createLogger } from "./telemetry/logger.ts";
import { createMetrics, type Metrics } from "./telemetry/metrics.ts";
import { createTransparentListener, nativeAddonStatus } from "./transparent/index.ts";

export const PORTS = { capture: 15900, proxy: 15901, admin: 15990 } as const;
export const DEFAULT_DRAIN_TIMEOUT_MS = 20_000;

export interface SidecarOptions {
  /** Kubernetes mode: policies from the API server, identity from the downward API. */
  kubernetes?: boolean;
  /** Standalone mode: AgentAccessPolicy YAML files. */
  policyFiles?: string[];
  secretsDir?: string;
  podInfoDir?: string;
  /** Standalone identity: the service account the agent runs as (`ns/name` or `name`). */
  serviceAccount?: string;
  /** Kubernetes mode outside a pod (tests): the API server and credentials, as a kubeconfig. */
  kubeConfig?: KubeConfigLike;
  adminHost?: string;
  /** 0 picks free ports (tests). */
  adminPort?: number;
  proxyPort?: number;
  /**
   * Transparent capture port (iptables REDIRECT target). Default: 15900 in Kubernetes mode, off
   * standalone; 0 picks a free port (tests).
   */
  capturePort?: number | false;
  /** Address per-connection listeners bind to (default 127.0.0.1). */
  bindHost?: string;
  /** Where the trust bundle (system roots + pod CA) is written; default $AIRLOCK_TRUST_BUNDLE, else not written. */
  trustBundlePath?: string;
  hashKeyFile?: string;
  /** Projected service-account tokens the sidecar logs in to Vault with (default: the pod's). */
  serviceAccountTokenDir?: string;
  approvals?: ApprovalGate;
  /** Standalone: approver credentials file (see approvals/credentials.ts). */
  approverTokenFile?: string;
  /** Standalone: the approver whose credential is created at start (default: the OS user). */
  approver?: string;
  /**
   * How long a drain waits for sessions to reach a boundary (default 20 s: inside the pod's
   * default 30 s termination grace period, leaving time to write the queued audit lines and
   * revoke credentials before the kubelet's SIGKILL).
   */
  drainTimeoutMs?: number;
  logger?: Logger;
  audit?: AuditSink;
  metrics?: Metrics;
}

export interface Sidecar {
  readonly ctx: SidecarContext;
  readonly adminPort: number;
  readonly proxyPort: number;
  readonly listeners: ListenerSet;
  /** The approval gate the guards use (AccessRequests in Kubernetes, a local store standalone). */
  readonly approvals: ApprovalGate;
  /**
   * Stops taking new connections and resolves once in-flight operations are done. `trigger`
   * says who asked (logged): the preStop hook, or the signal the process got.
   */
  drain(trigger?: string): Promise<void>;
  close(): Promise<void>;
}

function defaultHashKeyFile(secretsDir: string): string {
  // Kubernetes: a key from the install's Secret keeps hashes stable across pods; standalone: a
  // per-user key in the cache.
  return (
    process.env.AIRLOCK_HASH_KEY_FILE ??
    (secretsDir === DEFAULT_SECRETS_DIR
      ? join(secretsDir, "airlock-hash-key", "key")
      : join(homedir(), ".cache", "airlock", "hash.key"))
  );
}

/**
 * The agent-facing SSH host key, generated once and reused: in a pod, in the sidecar's own /tmp
 * volume (an emptyDir that lives as long as the pod, so sidecar restarts keep it); standalone, in
 * the per-user state dir. AIRLOCK_SSH_HOST_KEY_FILE points elsewhere (e.g. a mounted Secret).
 */
function defaultSshHostKeyFile(kubernetes: boolean): string {
  return kubernetes
    ? "/tmp/airlock/ssh_host_ed25519_key"
    : join(homedir(), ".cache", "airlock", "ssh_host_ed25519_key");
}

async function workloadFor(opts: SidecarOptions): Promise<WorkloadIdentity> {
  if (opts.kubernetes) return loadWorkloadIdentity(opts.podInfoDir);
  const sa = opts.serviceAccount ?? "default/agent";
  const [ns, name] = sa.includes("/") ? sa.split("/", 2) : ["default", sa];
  return {
    namespace: ns as string,
    podName: hostname(),
    serviceAccount: name as string,
    subject: serviceAccountSubject(ns as string, name as string),
    labels: {},
  };
}

export async function startSidecar(opts: SidecarOptions): Promise<Sidecar> {
  if (!opts.kubernetes && !opts.policyFiles?.length)
    throw new Error("standalone mode needs at least one --policy FILE");
  const logger = opts.logger ?? createLogger();
  const metrics = opts.metrics ?? createMetrics();
  const audit = opts.audit ?? createAuditSink(logger);
  const secretsDir = opts.secretsDir ?? DEFAULT_SECRETS_DIR;
  const hashKeyFile = opts.hashKeyFile ?? defaultHashKeyFile(secretsDir);
  mkdirSync(dirname(hashKeyFile), { recursive: true });
  const workload = await workloadFor(opts);
  // The policy objects are kept too: session recording reads each policy's `audit` settings.
  const policies = withPolicyObjects(createPolicyStore({ logger, metrics }));
  // SSH sessions record their terminal; HTTP and SQL sessions are recorded from their audit events.
  const recorder = createRecorder({ logger, settingsFor: recordingSettingsFrom(policies.objects) });
  const recordingAudit = recordingAuditSink(audit, recorder, policies);
  const secrets = createSecretStore(secretsDir);
  const ctx: SidecarContext = {
    logger,
    audit: recordingAudit,
    metrics,
    workload,
    policies,
    secrets,
    credentials: createCredentialSources({
      secrets,
      logger,
      metrics,
      ...(opts.serviceAccountTokenDir ? { tokenDir: opts.serviceAccountTokenDir } : {}),
    }),
    hashKey: loadOrCreateHashKey(hashKeyFile),
    verifierFor: createVerifierCache(),
  };

  // Policies first: nothing listens before there is something to enforce.
  let stopSource: () => Promise<void> | void;
  let kube: KubeClient | undefined;
  if (opts.kubernetes) {
    // The sidecar's own small API client (kube/): the full client library costs ~90 MB per pod.
    kube = createKubeClient(opts.kubeConfig ? accessFromKubeConfig(opts.kubeConfig) : inClusterAccess());
    const { startKubernetesSource } = await import("./sources/kubernetes.ts");
    const source = startKubernetesSource({
      kube,
      namespace: workload.namespace,
      podLabels: workload.labels,
      store: policies,
      logger,
      metrics,
    });
    stopSource = source.stop;
    await source.synced;
  } else {
    const source = await startFileSource({ files: opts.policyFiles ?? [], store: policies, logger, metrics });
    metrics.policySourceUp.set(1);
    stopSource = source.close;
  }

  // Approvals: AccessRequests in the pod's namespace, or standalone a local store decided through
  // the admin API's /approvals.
  let adminUrl: string | undefined;
  const kubernetesApprovalParts =
    kube && !opts.approvals
      ? (await import("./approvals/kubernetes.ts")).kubernetesApprovals(kube, workload, logger)
      : undefined;
  const approvalSetup = opts.approvals
    ? undefined
    : setupApprovals({
        ctx,
        ...(kubernetesApprovalParts ? { kubernetes: kubernetesApprovalParts } : {}),
        ...(opts.approverTokenFile ? { approverTokenFile: opts.approverTokenFile } : {}),
        ...(opts.approver ? { approver: opts.approver } : {}),
        adminUrl: () => adminUrl,
      });
  const approvals = opts.approvals ?? (approvalSetup?.gate as ApprovalGate);

  // The pod CA follows the policies: made now (bundle written) and on every change of HTTPS hosts.
  const trustBundlePath = opts.trustBundlePath ?? process.env[TRUST_BUNDLE_ENV];
  const podCa = startPodCaKeeper({
    policies,
    logger,
    label: workload.podName,
    metrics: ctx.metrics,
    ...(trustBundlePath ? { bundlePath: trustBundlePath } : {}),
  });
  await podCa.ready();
  const http = createHttpGuard(ctx, {
    approvals,
    podCa: podCa.current,
    ...(opts.bindHost ? { bindHost: opts.bindHost } : {}),
  });
  // PostgreSQL and SSH guards load once a policy in force names their protocol (lazy.ts): the SQL
  // parser's WebAssembly and ssh2 are most of an idle sidecar's memory.
  const ssh: LazyHandler<SshGuard> = lazyHandler(
    "ssh",
    async () =>
      (await import("./protocols/ssh/index.ts")).createSshGuard(ctx, {
        approvals,
        recorder,
        hostKeyFile: process.env.AIRLOCK_SSH_HOST_KEY_FILE ?? defaultSshHostKeyFile(opts.kubernetes === true),
      }),
    logger,
  );
  const postgres: LazyHandler<PostgresGuard> = lazyHandler(
    "postgres",
    async () =>
      (await import("./protocols/postgres/index.ts")).createPostgresGuard(ctx, {
        approvals,
        podCa: podCa.current,
      }),
    logger,
  );
  const lazyGuards = { postgres, ssh } as const;
  const loadConfiguredGuards = () =>
    Promise.all(
      (["postgres", "ssh"] as const)
        .filter((p) => [...policies.current().connections.values()].some((c) => c.spec.protocol === p))
        .map((p) => lazyGuards[p].load()),
    );
  // At start a guard that cannot load (e.g. an SSH host key file that does not parse) stops the
  // sidecar, as before; after a policy change it keeps the sidecar unready (lazy.ts).
  await loadConfiguredGuards();
  const stopGuardLoading = policies.onChange(() => void loadConfiguredGuards().catch(() => undefined));
  const handlers: Partial<Record<"http" | "postgres" | "ssh", ConnectionHandler>> = { http, postgres, ssh };
  const listeners = await startListenerSet({ ctx, handlers, http, bindHost: opts.bindHost });
  const proxy = await http.listenProxy({ port: opts.proxyPort ?? PORTS.proxy });
  const capturePort = opts.capturePort ?? (opts.kubernetes ? PORTS.capture : false);
  let capture: { close(): Promise<void> } | undefined;
  let captureProblem: string | undefined;
  if (capturePort !== false) {
    // Without the addon the original destination of captured traffic is unknown: stay unready
    // (the agent never starts) rather than guess.
    const addon = nativeAddonStatus();
    if (addon.ok) capture = await createTransparentListener({ ctx, port: capturePort, handlers });
    else captureProblem = `transparent capture unavailable: ${addon.reason}`;
  }

  let draining: Promise<void> | undefined;
  const drain = (trigger = "request") => {
    if (draining) {
      // The preStop hook drains first; the kubelet's SIGTERM follows once it returns.
      logger.info({ trigger }, "drain already under way or done");
      return draining;
    }
    draining = (async () => {
      logger.info({ trigger }, "draining: no new connections; waiting for in-flight operations");
      // Stop accepting now; the servers' close resolves only once their connections are gone.
      const closed = Promise.all([listeners.close(), capture?.close()]);
      const timeoutMs = opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
      const deadline = Date.now() + timeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((r) => {
        timer = setTimeout(() => r("late"), timeoutMs + 3_000);
      });
      // PostgreSQL sessions end at a boundary or at the deadline; HTTP and SSH finish their
      // operations. Whatever is still open a little past the deadline is cut by close().
      const drained = await Promise.race([
        Promise.all(Object.values(handlers).map((h) => h?.drain(deadline))),
        late,
      ]);
      clearTimeout(timer);
      if (drained === "late") logger.warn({ timeoutMs }, "drain deadline passed; closing what is left");
      // In-flight operations are done: revoke the Vault leases sessions still hold (an idle
      // session left open would otherwise keep its credential until the lease TTL).
      await ctx.credentials.drain();
      if (drained !== "late") await closed;
    })();
    return draining;
  };
  const admin = await startAdminServer({
    host: opts.adminHost ?? (opts.kubernetes ? "0.0.0.0" : "127.0.0.1"),
    port: opts.adminPort ?? PORTS.admin,
    metrics,
    logger,
    notReadyReason: () =>
      captureProblem ??
      postgres.problem ??
      ssh.problem ??
      (policies.current().policies.length === 0
        ? "no valid AgentAccessPolicy selects this pod"
        : listeners.notReadyReason()),
    drain,
    routes: approvalSetup?.routes ?? [],
  });
  adminUrl = `http://127.0.0.1:${admin.port}`;
  logger.info(
    {
      adminPort: admin.port,
      proxyPort: proxy.port,
      policies: policies.current().policies,
      mode: opts.kubernetes ? "kubernetes" : "standalone",
    },
    "airlock sidecar started",
  );
  return {
    ctx,
    adminPort: admin.port,
    proxyPort: proxy.port,
    listeners,
    approvals,
    drain,
    async close() {
      await stopSource();
      podCa.stop();
      await listeners.close();
      await capture?.close();
      await http.close();
      stopGuardLoading();
      await ssh.loaded?.close();
      recordingAudit.close();
      await recorder.close();
      await approvalSetup?.close();
      kube?.close();
      await admin.close();
    },
  };
}
