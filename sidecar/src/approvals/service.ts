// The approval service: the ApprovalGate every guard calls. On a requireApproval decision it
//   1. lets the operation through on an open grant (same requester, policy, rule, connection);
//   2. finds this requester's existing request for the same operation (async retries, a retry after
//      the agent went away, a restart), or creates a new AccessRequest (spec from the rule, masked);
//   3. in `wait` mode holds the operation until approvals from minApprovals distinct users arrive,
//      a denial arrives, or the request expires (the sidecar then writes phase Expired); in `async`
//      mode answers at once with the request's name and state.
// Only requests this sidecar created are honoured (tracker.ts), and only the approvals `assess`
// counts. When the store cannot be reached the operation fails closed at its timeout with a clear
// message. What the approver sees is built in request-spec.ts, what the agent is told in outcomes.ts.
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { AccessRequest, AccessRequestSpec } from "../../../api/src/index.ts";
import type { WorkloadIdentity } from "../identity/index.ts";
import {
  type ApprovalGate,
  type ApprovalOutcome,
  type ApprovalSettings,
  ApprovalWaitCanceled,
  approvalSettings,
} from "./gate.ts";
import { type ApprovalMetrics, approverGroupLabel } from "./metrics.ts";
import type { Notifier } from "./notify.ts";
import {
  agentGone,
  creationFailed,
  creationRefused,
  grantOutcome,
  SHUTTING_DOWN,
  trackedOutcome,
  unavailable,
} from "./outcomes.ts";
import { grantKey, newAccessRequest, requestKey, requestName } from "./request.ts";
import { approvalTextMasker, buildSpec, type SpecContext } from "./request-spec.ts";
import { type ApprovalStore, ConflictError, RejectedError } from "./store.ts";
import { createTracker, type Tracked } from "./tracker.ts";

export interface ApprovalServiceOptions {
  store: ApprovalStore;
  workload: WorkloadIdentity;
  /** The pod's UID (downward API `metadata.uid`): recorded, owner reference, re-attach check. */
  podUid?: string;
  logger: Logger;
  /**
   * Key for operation fingerprints (the install's hash key: stable across restarts, so a restarted
   * sidecar recognizes the same operation). Default: a random key (fingerprints do not survive).
   */
  hashKey?: Buffer;
  metrics?: ApprovalMetrics;
  notifier?: Notifier;
  /**
   * Checked before any approval is trusted: resolves to a problem (e.g. "the admission policy is not
   * installed") or undefined. Throwing means "could not check" (not cached).
   */
  verifyTrust?: () => Promise<string | undefined>;
  /** The command that decides request `name`, for messages and notifications. */
  approveHint?: (name: string, namespace: string) => string;
  now?: () => number;
  /** Backoff while creating a request fails (defaults 250 ms doubling to 5 s). */
  retryInitialMs?: number;
  retryMaxMs?: number;
}

export interface GrantInfo {
  request: string;
  namespace: string;
  requester: { serviceAccount: string; user?: string };
  policy: string;
  rule: string;
  connection: string;
  approvers: readonly string[];
  expiresAt: string;
}

export interface ApprovalService extends ApprovalGate {
  readonly store: ApprovalStore;
  /** Resolves once the requests that existed before this service started are re-attached. */
  readonly ready: Promise<void>;
  /** Open grants of this sidecar. */
  grants(): GrantInfo[];
  /** Requests of this sidecar that wait for a decision. */
  pending(): AccessRequest[];
  close(): Promise<void>;
}

const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));

export function createApprovalService(opts: ApprovalServiceOptions): ApprovalService {
  const { store, logger } = opts;
  const now = opts.now ?? Date.now;
  const specContext: SpecContext = {
    masker: approvalTextMasker(),
    fingerprintKey: opts.hashKey ?? randomBytes(32),
    workload: opts.workload,
    podUid: opts.podUid,
    now,
  };
  const tracker = createTracker({
    store,
    workload: opts.workload,
    podUid: opts.podUid,
    logger,
    metrics: opts.metrics,
    notifier: opts.notifier,
    now,
  });
  let closed = false;
  let trusted: { until: number; problem: string | undefined } | undefined;

  const hint = (name: string) =>
    opts.approveHint?.(name, store.namespace) ?? `kubectl airlock approve ${name} -n ${store.namespace}`;
  const outcome = (t: Tracked) => trackedOutcome(t, hint);

  const ready = store.ready.then(() => tracker.reattach());

  /** A trustworthy answer is cached for 5 minutes, a problem for 10 s (so a fix is seen soon). */
  async function checkTrust(): Promise<string | undefined> {
    if (!opts.verifyTrust) return undefined;
    if (trusted && trusted.until > now()) return trusted.problem;
    try {
      const problem = await opts.verifyTrust();
      trusted = { problem, until: now() + (problem ? 10_000 : 300_000) };
      return problem;
    } catch (err) {
      logger.warn({ err: errText(err) }, "could not verify the AccessRequest admission policy");
      return undefined;
    }
  }

  const sleep = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });

  /**
   * Creates the request, retrying with backoff while the store fails: in wait mode until the
   * request's own expiry (then the operation fails closed at its timeout), in async mode not at all.
   */
  async function create(
    spec: AccessRequestSpec,
    s: ApprovalSettings,
    signal: AbortSignal,
  ): Promise<Tracked | ApprovalOutcome> {
    const deadline = Date.parse(spec.expiresAt);
    const countUnavailable = () =>
      opts.metrics?.decisions.inc({ outcome: "unavailable", group: approverGroupLabel(spec.approvers) });
    let delay = opts.retryInitialMs ?? 250;
    let lastError = "";
    for (;;) {
      const obj = newAccessRequest(
        requestName(spec.rule),
        store.namespace,
        spec,
        opts.podUid ? { podUid: opts.podUid } : undefined,
      );
      try {
        const t = tracker.created(await store.create(obj), hint);
        logger.info(
          { request: t.name, rule: spec.rule, connection: spec.connection, mode: s.mode },
          "access request created",
        );
        return t;
      } catch (err) {
        if (err instanceof ConflictError) continue; // name taken: draw another
        lastError = errText(err);
        if (err instanceof RejectedError) {
          countUnavailable();
          return creationRefused(lastError);
        }
      }
      logger.warn({ err: lastError, retryInMs: delay }, "could not create an access request; retrying");
      if (s.mode === "async" || now() + delay >= deadline || signal.aborted || closed) break;
      await sleep(delay, signal);
      delay = Math.min(delay * 2, opts.retryMaxMs ?? 5000);
    }
    if (!signal.aborted && s.mode === "wait") await sleep(Math.max(0, deadline - now()), signal);
    countUnavailable();
    return creationFailed(s.mode, s.timeoutMs, lastError);
  }

  return {
    store,
    ready,
    async request(input) {
      if (closed) return unavailable(SHUTTING_DOWN);
      let s: ApprovalSettings;
      try {
        s = approvalSettings(input.decision);
      } catch (err) {
        return unavailable(errText(err));
      }
      const problem = await checkTrust();
      if (problem) {
        logger.error({ problem }, "approvals are not trustworthy here; refusing operations that need one");
        return unavailable(problem);
      }
      const spec = buildSpec(input, s, specContext);
      const key = requestKey(spec);

      // Requests from before a restart must be known before deciding anything.
      const attached = await Promise.race([
        ready.then(() => true),
        sleep(Math.min(3000, s.timeoutMs), input.signal).then(() => false),
      ]);
      if (!attached) logger.warn("access requests from before the restart are not re-attached yet");

      let t = tracker.findExisting(key);
      if (t?.final?.outcome === "approved") {
        // This very operation was approved: it passes (once, or again while its grant is open).
        const direct = !t.consumed;
        tracker.consume(t);
        if (!direct) opts.metrics?.grantsUsed.inc();
        return { ...outcome(t), grant: !direct };
      }
      const grant = tracker.openGrant(grantKey(spec));
      if (grant) {
        opts.metrics?.grantsUsed.inc();
        return grantOutcome(grant);
      }
      if (!t) {
        const made = await create(spec, s, input.signal);
        if (!("uid" in made)) return made;
        t = made;
      }
      if (!t.final && s.mode === "wait") {
        input.onWaiting?.({ request: t.name, approveHint: hint(t.name), expiresAt: t.obj.spec.expiresAt });
        const decided = await tracker.waitFor(t, input.signal);
        if (!decided) return agentGone(t, hint, input.signal.reason instanceof ApprovalWaitCanceled);
        // Woken without a decision: the service is closing.
        if (!t.final) return unavailable(SHUTTING_DOWN, t.name);
      }
      const result = outcome(t);
      if (result.approved) tracker.consume(t);
      return result;
    },
    grants() {
      return tracker.openGrants().map(
        (g): GrantInfo => ({
          request: g.request,
          namespace: store.namespace,
          requester: {
            serviceAccount: g.spec.requester.serviceAccount,
            ...(g.spec.requester.user ? { user: g.spec.requester.user } : {}),
          },
          policy: g.spec.policy,
          rule: g.spec.rule,
          connection: g.spec.connection,
          approvers: g.approvers,
          expiresAt: new Date(g.until).toISOString(),
        }),
      );
    },
    pending: () => tracker.pending(),
    async close() {
      closed = true;
      await tracker.close();
      await opts.notifier?.close();
      await store.close();
    },
  };
}
