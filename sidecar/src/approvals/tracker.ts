// The requests this sidecar tracks: the only ones whose approvals it honours. Tracked by UID (and,
// after a restart, re-attached by label, pod name, service account and pod UID), followed through
// the store's watch until they are decided or expired at expiresAt by this sidecar itself; an
// approval with a grantTtl opens a grant. What gets written and told about them: recorder.ts.
import type { Logger } from "pino";
import { parseDuration } from "../../../api/src/duration.ts";
import type { AccessRequest, AccessRequestSpec } from "../../../api/src/index.ts";
import type { WorkloadIdentity } from "../identity/index.ts";
import { type ExpiryContext, expire } from "./expiry.ts";
import type { ApprovalMetrics } from "./metrics.ts";
import type { Notifier } from "./notify.ts";
import { type Final, fromAssessment } from "./outcomes.ts";
import { createRecorder, type Recorded } from "./recorder.ts";
import { CONSUMED_CONDITION, grantKey, isConsumed, LABELS, MANAGED_BY, requestKey } from "./request.ts";
import type { ApprovalStore } from "./store.ts";

export interface Tracked extends Recorded {
  name: string;
  uid: string;
  /** requestKey: same requester, same operation. */
  key: string;
  /** grantKey: same requester, policy, rule and connection. */
  grantKey: string;
  createdMs: number;
  expiresMs: number;
  grantTtlMs: number | undefined;
  /** The newest version seen. */
  obj: AccessRequest;
  final?: Final;
  grantUntil?: number;
  /** A single-use approval was used. */
  consumed: boolean;
  timer?: NodeJS.Timeout;
  waiters: Set<() => void>;
}

export interface Grant {
  request: string;
  approvers: readonly string[];
  until: number;
  spec: AccessRequestSpec;
}

export interface TrackerOptions {
  store: ApprovalStore;
  workload: WorkloadIdentity;
  podUid?: string | undefined;
  logger: Logger;
  metrics?: ApprovalMetrics | undefined;
  notifier?: Notifier | undefined;
  now: () => number;
}

export interface Tracker {
  /** Adopts the store's requests of this pod that are not tracked yet (once the store is ready). */
  reattach(): void;
  /** Tracks a request this sidecar just created: records phase Pending and tells the approvers. */
  created(obj: AccessRequest, approveHint: (name: string) => string): Tracked;
  /** The requester's request for the same operation that may still answer it. */
  findExisting(key: string): Tracked | undefined;
  /** Marks a single-use approval used (so an async retry cannot replay it) and records that. */
  consume(t: Tracked): void;
  /** The open grant for this grantKey; an expired one is dropped. */
  openGrant(key: string): Grant | undefined;
  openGrants(): Grant[];
  /** Resolves true once `t` is decided (or the tracker closes), false when `signal` aborts first. */
  waitFor(t: Tracked, signal: AbortSignal): Promise<boolean>;
  /** Requests that wait for a decision. */
  pending(): AccessRequest[];
  /** Stops following the store, wakes every waiter, and waits for the status writes. */
  close(): Promise<void>;
}

const toMs = (v: unknown): number => (v instanceof Date ? v.getTime() : Date.parse(String(v)));

/** A request deleted before it was decided counts as denied (a fresh object: Finals are handed out). */
const deleted = (): Final => ({
  outcome: "denied",
  approvers: [],
  deniedBy: "(deleted)",
  reason: "the request was deleted",
});

export function createTracker(opts: TrackerOptions): Tracker {
  const { store, workload, logger, now } = opts;
  const recorder = createRecorder(opts);
  const byUid = new Map<string, Tracked>();
  const grants = new Map<string, Grant>();
  let closed = false;

  const refreshPendingGauge = () => {
    let n = 0;
    for (const t of byUid.values()) if (!t.final) n++;
    opts.metrics?.pending.set(n);
  };

  function belongsHere(obj: AccessRequest): boolean {
    const r = obj.spec?.requester;
    if (!r || obj.metadata?.labels?.[LABELS.managedBy] !== MANAGED_BY) return false;
    if (r.pod !== workload.podName || r.serviceAccount !== workload.subject) return false;
    // Same pod name, other pod (a StatefulSet's recreated replica): not ours.
    if (opts.podUid && r.podUid && r.podUid !== opts.podUid) return false;
    return true;
  }

  function track(obj: AccessRequest): Tracked {
    const uid = obj.metadata.uid as string;
    const existing = byUid.get(uid);
    if (existing) return existing;
    let grantTtlMs: number | undefined;
    try {
      grantTtlMs = obj.spec.grantTtl ? parseDuration(obj.spec.grantTtl) : undefined;
    } catch {
      grantTtlMs = undefined;
    }
    const t: Tracked = {
      name: obj.metadata.name as string,
      uid,
      key: requestKey(obj.spec),
      grantKey: grantKey(obj.spec),
      createdMs: toMs(obj.metadata.creationTimestamp) || now(),
      expiresMs: toMs(obj.spec.expiresAt),
      grantTtlMs,
      obj,
      consumed: isConsumed(obj),
      waiters: new Set(),
      writes: Promise.resolve(),
    };
    byUid.set(uid, t);
    return t;
  }

  function schedule(t: Tracked) {
    clearTimeout(t.timer);
    if (t.final || closed) return;
    const delay = Math.max(0, t.expiresMs - now());
    t.timer = setTimeout(() => void expire(t, expiry), Math.min(delay, 2 ** 31 - 1));
  }

  /** Records how `t` ended (once): opens its grant, and unless `quiet` counts, writes and tells it. */
  function finalize(t: Tracked, final: Final, how: { quiet?: boolean } = {}) {
    if (t.final) return;
    t.final = final;
    clearTimeout(t.timer);
    refreshPendingGauge();
    const status = t.obj.status ?? {};
    if (final.outcome === "approved" && t.grantTtlMs) {
      const recorded = status.grantExpiresAt ? toMs(status.grantExpiresAt) : Number.NaN;
      t.grantUntil = Number.isFinite(recorded) ? recorded : now() + t.grantTtlMs;
      const current = grants.get(t.grantKey);
      if (!current || current.until < t.grantUntil)
        grants.set(t.grantKey, {
          request: t.name,
          approvers: final.approvers,
          until: t.grantUntil,
          spec: t.obj.spec,
        });
    }
    if (!(how.quiet ?? false)) recorder.decided(t, final);
    for (const wake of t.waiters) wake();
    t.waiters.clear();
  }

  function observe(t: Tracked, obj: AccessRequest) {
    // Older versions can arrive late (a create response after the watch event): keep the newest.
    const prev = Number(t.obj.metadata.resourceVersion);
    const next = Number(obj.metadata.resourceVersion);
    if (Number.isFinite(prev) && Number.isFinite(next) && next < prev) return;
    t.obj = obj;
    if (isConsumed(obj)) t.consumed = true;
    const final = fromAssessment(obj);
    if (final) finalize(t, final);
  }

  function adopt(obj: AccessRequest): Tracked {
    const t = track(obj);
    const final = fromAssessment(obj);
    if (final) {
      // Already decided before this service saw it: restore grants, do not announce it again
      // unless the phase was never written.
      const phase = obj.status?.phase;
      const recorded =
        (final.outcome === "approved" && phase === "Approved") ||
        (final.outcome === "denied" && phase === "Denied") ||
        (final.outcome === "expired" && phase === "Expired");
      finalize(t, final, { quiet: recorded });
    } else {
      schedule(t);
    }
    refreshPendingGauge();
    return t;
  }

  const expiry: ExpiryContext<Tracked> = { store, closed: () => closed, observe, finalize, deleted };

  const unsubscribe = store.subscribe((obj, event) => {
    const t = obj.metadata?.uid ? byUid.get(obj.metadata.uid) : undefined;
    if (!t) return; // not created by this sidecar: ignored, whatever it says
    if (event === "delete") finalize(t, deleted());
    else observe(t, obj);
  });

  return {
    reattach() {
      for (const obj of store.list()) {
        if (!belongsHere(obj) || !obj.metadata.uid || byUid.has(obj.metadata.uid)) continue;
        const t = adopt(obj);
        logger.info({ request: t.name, state: t.final?.outcome ?? "pending" }, "re-attached access request");
      }
    },
    created(obj, approveHint) {
      const t = adopt(obj);
      // The watch may already have seen a newer version (a very fast approver).
      const cached = store.list().find((o) => o.metadata.uid === t.uid);
      if (cached) observe(t, cached);
      recorder.writeStatus(t, { phase: "Pending" }, "phase Pending");
      recorder.notify({ kind: "requested", request: t.obj, approveHint: approveHint(t.name) });
      return t;
    },
    findExisting(key) {
      let pending: Tracked | undefined;
      let denied: Tracked | undefined;
      for (const t of byUid.values()) {
        if (t.key !== key) continue;
        if (!t.final) pending ??= t;
        else if (t.final.outcome === "approved") {
          if (t.grantTtlMs ? (t.grantUntil ?? 0) > now() : !t.consumed) return t;
        } else if (t.final.outcome === "denied" && t.expiresMs > now()) denied ??= t;
      }
      return pending ?? denied;
    },
    consume(t) {
      if (t.consumed) return;
      t.consumed = true;
      const conditions = (t.obj.status?.conditions ?? []).filter((c) => c.type !== CONSUMED_CONDITION);
      conditions.push({
        type: CONSUMED_CONDITION,
        status: "True",
        reason: "OperationPassed",
        message: "The approved operation went through; a new operation needs a new request.",
        lastTransitionTime: new Date(now()).toISOString(),
      });
      recorder.writeStatus(t, { conditions }, "that the approval was used");
    },
    openGrant(key) {
      const grant = grants.get(key);
      if (grant && grant.until > now()) return grant;
      if (grant) grants.delete(key);
      return undefined;
    },
    openGrants() {
      return [...grants.values()].filter((g) => g.until > now());
    },
    waitFor(t, signal) {
      if (t.final) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const wake = () => {
          signal.removeEventListener("abort", gone);
          resolve(true);
        };
        const gone = () => {
          t.waiters.delete(wake);
          resolve(false);
        };
        t.waiters.add(wake);
        signal.addEventListener("abort", gone, { once: true });
        if (signal.aborted) gone();
      });
    },
    pending() {
      return [...byUid.values()].filter((t) => !t.final).map((t) => t.obj);
    },
    async close() {
      closed = true;
      unsubscribe();
      for (const t of byUid.values()) {
        clearTimeout(t.timer);
        if (!t.final) for (const wake of t.waiters) wake();
      }
      await Promise.allSettled([...byUid.values()].map((t) => t.writes));
    },
  };
}
