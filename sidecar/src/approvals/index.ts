// Just-in-time approvals: the ApprovalGate guards call, over AccessRequests in Kubernetes or, in
// standalone mode, a local store decided through the admin API. `setupApprovals` is what the
// sidecar composition (app.ts) calls.
import { userInfo } from "node:os";
import type { Route } from "../admin/server.ts";
import type { SidecarContext } from "../runtime/context.ts";
import { approvalRoutes } from "./admin.ts";
import { defaultApproverTokenFile, ensureApproverCredential } from "./credentials.ts";
import { createLocalStore } from "./local-store.ts";
import { createApprovalMetrics } from "./metrics.ts";
import { createWebhookNotifier, webhookUrlsFromEnv } from "./notify.ts";
import { type ApprovalService, createApprovalService } from "./service.ts";
import type { ApprovalStore } from "./store.ts";

export { approvalRoutes } from "./admin.ts";
export {
  type ApproverCredential,
  approverFor,
  CredentialFileError,
  defaultApproverTokenFile,
  ensureApproverCredential,
  readApproverCredentials,
} from "./credentials.ts";
export {
  type ApprovalGate,
  type ApprovalInput,
  type ApprovalMode,
  type ApprovalOutcome,
  type ApprovalProtocol,
  type ApprovalSettings,
  type ApprovalStatus,
  approvalSettings,
  NO_REQUEST,
  summarizeOperation,
} from "./gate.ts";
export {
  createLocalStore,
  type LocalApprovalStore,
  type LocalDecision,
  type LocalStoreOptions,
} from "./local-store.ts";
export { type ApprovalMetrics, createApprovalMetrics } from "./metrics.ts";
export {
  createWebhookNotifier,
  type Notice,
  type Notifier,
  noticeText,
  webhookUrlsFromEnv,
} from "./notify.ts";
export { type Assessment, assess, LABELS, MANAGED_BY } from "./request.ts";
export {
  type ApprovalService,
  type ApprovalServiceOptions,
  createApprovalService,
  type GrantInfo,
} from "./service.ts";
export { type ApprovalStore, ConflictError, RejectedError } from "./store.ts";

export interface ApprovalsSetupOptions {
  ctx: SidecarContext;
  /**
   * Kubernetes mode: the AccessRequest store of the pod's namespace and the admission-policy
   * check (kubernetes.ts builds both; it is the only part that loads the Kubernetes client).
   * Absent: a local store.
   */
  kubernetes?: { store: ApprovalStore; verifyTrust?: () => Promise<string | undefined> };
  /** Standalone: persist requests here (default: AIRLOCK_APPROVALS_FILE, else memory only). */
  storeFile?: string;
  /** Webhook URLs for notifications (default: AIRLOCK_APPROVAL_WEBHOOKS). */
  webhooks?: readonly string[];
  /** The pod's UID (default: AIRLOCK_POD_UID). */
  podUid?: string;
  /** Standalone: approver credentials file (default AIRLOCK_APPROVER_TOKEN_FILE, else ~/.config/airlock/approver-tokens). */
  approverTokenFile?: string;
  /** Standalone: the approver whose credential is created at start (default AIRLOCK_APPROVER, else the OS user). */
  approver?: string;
  /** The admin API's base URL, for the standalone "how to approve" hint. */
  adminUrl?: () => string | undefined;
  env?: Readonly<Record<string, string | undefined>>;
}

export interface ApprovalsSetup {
  gate: ApprovalService;
  /** Admin routes (`/approvals`). */
  routes: Route[];
  close(): Promise<void>;
}

export function setupApprovals(opts: ApprovalsSetupOptions): ApprovalsSetup {
  const env = opts.env ?? process.env;
  const { ctx } = opts;
  const logger = ctx.logger.child({ component: "approvals" });
  const urls = opts.webhooks ?? webhookUrlsFromEnv(env);
  const podUid = opts.podUid ?? env.AIRLOCK_POD_UID;
  const notifier = urls.length ? createWebhookNotifier({ urls, logger }) : undefined;
  const metrics = createApprovalMetrics(ctx.metrics.registry);
  const common = {
    workload: ctx.workload,
    hashKey: ctx.hashKey,
    logger,
    metrics,
    ...(notifier ? { notifier } : {}),
    ...(podUid ? { podUid } : {}),
  };
  let gate: ApprovalService;
  let credentialsFile: string | undefined;
  if (opts.kubernetes) {
    const { store, verifyTrust } = opts.kubernetes;
    gate = createApprovalService({ ...common, store, ...(verifyTrust ? { verifyTrust } : {}) });
  } else {
    credentialsFile = opts.approverTokenFile ?? defaultApproverTokenFile(env);
    const approver = opts.approver ?? env.AIRLOCK_APPROVER ?? userInfo().username;
    ensureApproverCredential(credentialsFile, approver);
    logger.info(
      { file: credentialsFile, approver },
      "standalone approvals: decisions need a token from this file",
    );
    const file = opts.storeFile ?? env.AIRLOCK_APPROVALS_FILE;
    const store = createLocalStore({ namespace: ctx.workload.namespace, ...(file ? { file } : {}) });
    gate = createApprovalService({
      ...common,
      store,
      approveHint: (name) => {
        const url = opts.adminUrl?.();
        return `kubectl airlock approve ${name}${url ? ` --sidecar ${url}` : ""}`;
      },
    });
  }
  return {
    gate,
    routes: [approvalRoutes(gate, credentialsFile ? { credentialsFile } : {})],
    close: () => gate.close(),
  };
}
