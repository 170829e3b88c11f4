// The approval service: the ApprovalGate every guard calls. On a requireApproval decision it
//   1. lets the operation through on an open grant (same requester, policy, rule, connection);
//   2. finds this requester's existing request for the same operation (async retries, a retry after
//      the agent went away, a restart), or creates a new AccessRequest (spec from the rule, masked);
//   3. in `wait` mode holds the operation until approvals from minApprovals distinct users arrive,
//      a denial arrives, or the request expires (the sidecar then writes phase Expired); in `async`
//      mode answers at once with the request's name and state.
// Only requests this sidecar created (tracked by UID; after a restart re-attached by label, pod
// name, service account and pod UID) are honoured, and only the approvals `assess` counts.
// When the store cannot be reached the operation fails closed at its timeout with a clear message.
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { parseDuration } from "../../../api/src/duration.ts";
import type { AccessRequest, AccessRequestSpec, AccessRequestStatus } from "../../../api/src/index.ts";
import type { WorkloadIdentity } from "../identity/index.ts";
import { createMasker, type Masker } from "../masking/index.ts";
import {
  type ApprovalGate,
  type ApprovalInput,
  type ApprovalOutcome,
  type ApprovalSettings,
  ApprovalWaitCanceled,
  approvalSettings,
  NO_REQUEST,
  operationFingerprintParts,
  summarizeOperation,
} from "./gate.ts";
import { type ApprovalMetricOutcome, type ApprovalMetrics, approverGroupLabel } from "./metrics.ts";
import type { Notice, Notifier } from "./notify.ts";
import {
  assess,
  CONSUMED_CONDITION,
  grantKey,
  isConsumed,
  LABELS,
  MANAGED_BY,
  newAccessRequest,
  operationFingerprint,
  requestKey,
  requestName,
} from "./request.ts";
import { type ApprovalStore, ConflictError, RejectedError } from "./store.ts";

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

type Final =
  | { outcome: "approved"; approvers: string[] }
  | { outcome: "denied"; approvers: string[]; deniedBy: string; reason?: string }
  | { outcome: "expired"; approvers: string[] }
  | { outcome: "unavailable"; approvers: string[]; message: string };

interface Tracked {
  name: string;
  uid: string;
  key: string;
  grantKey: string;
  createdMs: number;
  expiresMs: number;
  grantTtlMs: number | undefined;
  obj: AccessRequest;
  final?: Final;
  grantUntil?: number;
  consumed: boolean;
  timer?: NodeJS.Timeout;
  waiters: Set<() => void>;
  writes: Promise<unknown>;
}

interface Grant {
  request: string;
  approvers: readonly string[];
  until: number;
  spec: AccessRequestSpec;
}

const toMs = (v: unknown): number => (v instanceof Date ? v.getTime() : Date.parse(String(v)));
const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));

function durationText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

// Text from the agent leaves the sidecar only through this: no control characters (line breaks
// kept where they carry meaning, e.g. a SQL `--` comment line), secrets and personal data redacted
// by the masking detectors, bounded length.
// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]+/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: as above, keeping line feeds
const CONTROL_BUT_LF = /[\u0000-\u0009\u000b-\u001f\u007f]+/g;

function cleanText(masker: Masker, text: string, max: number, opts: { multiline?: boolean } = {}): string {
  const flat = opts.multiline
    ? text.replace(/\r\n?/g, "\n").replace(CONTROL_BUT_LF, " ").trim()
    : text.replace(CONTROL, " ").trim();
  const masked = masker.maskText(flat).text;
  return masked.length > max ? `${masked.slice(0, max - 1)}…` : masked;
}

export function createApprovalService(opts: ApprovalServiceOptions): ApprovalService {
  const { store, workload, logger } = opts;
  const now = opts.now ?? Date.now;
  const fingerprintKey = opts.hashKey ?? randomBytes(32);
  const masker = createMasker({
    rules: [{ name: "approval-text", detectors: ["all"], strategy: "redact" }],
    hashKey: randomBytes(32),
  });
  const byUid = new Map<string, Tracked>();
  const grants = new Map<string, Grant>();
  let closed = false;
  let trusted: { until: number; problem: string | undefined } | undefined;

  const hint = (name: string) =>
    opts.approveHint?.(name, store.namespace) ?? `kubectl airlock approve ${name} -n ${store.namespace}`;

  const refreshPendingGauge = () => {
    let n = 0;
    for (const t of byUid.values()) if (!t.final) n++;
    opts.metrics?.pending.set(n);
  };

  function notify(notice: Notice) {
    try {
      opts.notifier?.notify(notice);
    } catch (err) {
      logger.warn({ err: errText(err) }, "approval notification could not be queued");
    }
  }

  /** Status writes are bookkeeping: in order per request, in the background, logged on failure. */
  function writeStatus(t: Tracked, status: Partial<AccessRequestStatus>, what: string) {
    t.writes = t.writes
      .then(() => store.patchStatus(t.name, status))
      .catch((err) => logger.warn({ request: t.name, err: errText(err) }, `could not record ${what}`));
  }

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
    t.timer = setTimeout(() => void expire(t), Math.min(delay, 2 ** 31 - 1));
  }

  function finalize(t: Tracked, final: Final, how: { quiet?: boolean } = {}) {
    if (t.final) return;
    t.final = final;
    clearTimeout(t.timer);
    refreshPendingGauge();
    const status = t.obj.status ?? {};
    const quiet = how.quiet ?? false;
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
    if (!quiet) {
      const outcome: ApprovalMetricOutcome = final.outcome;
      opts.metrics?.decisions.inc({ outcome, group: approverGroupLabel(t.obj.spec.approvers) });
      if (final.outcome !== "unavailable")
        opts.metrics?.decisionSeconds.observe(Math.max(0, now() - t.createdMs) / 1000);
      const grantExpiresAt = t.grantUntil ? new Date(t.grantUntil).toISOString() : undefined;
      if (final.outcome === "approved") {
        const patch: Partial<AccessRequestStatus> = {};
        if (status.phase !== "Approved") patch.phase = "Approved";
        if (grantExpiresAt && status.grantExpiresAt !== grantExpiresAt) patch.grantExpiresAt = grantExpiresAt;
        if (Object.keys(patch).length) writeStatus(t, patch, "the approval");
        notify({
          kind: "approved",
          request: t.obj,
          users: final.approvers,
          ...(grantExpiresAt ? { grantExpiresAt } : {}),
        });
      } else if (final.outcome === "denied") {
        if (status.phase !== "Denied") writeStatus(t, { phase: "Denied" }, "the denial");
        notify({
          kind: "denied",
          request: t.obj,
          users: [final.deniedBy],
          ...(final.reason ? { reason: final.reason } : {}),
        });
      } else if (final.outcome === "expired") {
        notify({ kind: "expired", request: t.obj });
      }
      logger.info(
        { request: t.name, outcome: final.outcome, approvers: final.approvers, grantExpiresAt },
        `access request ${final.outcome}`,
      );
    }
    for (const wake of t.waiters) wake();
    t.waiters.clear();
  }

  function fromAssessment(obj: AccessRequest): Final | undefined {
    const a = assess(obj);
    switch (a.outcome) {
      case "pending":
        return undefined;
      case "denied":
        return {
          outcome: "denied",
          approvers: a.approvers,
          deniedBy: a.deniedBy,
          ...(a.reason ? { reason: a.reason } : {}),
        };
      default:
        return { outcome: a.outcome, approvers: a.approvers };
    }
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

  /** At expiresAt: one fresh read decides; if still pending, Expired is written on that version. */
  async function expire(t: Tracked): Promise<void> {
    for (let attempt = 0; attempt < 5 && !t.final && !closed; attempt++) {
      let fresh: AccessRequest | undefined;
      try {
        fresh = await store.get(t.name);
      } catch (err) {
        unreachable(t, `could not confirm it before it expired: ${errText(err)}`);
        return;
      }
      if (!fresh) {
        finalize(t, {
          outcome: "denied",
          approvers: [],
          deniedBy: "(deleted)",
          reason: "the request was deleted",
        });
        return;
      }
      observe(t, fresh);
      if (t.final) return;
      try {
        const written = await store.patchStatus(
          t.name,
          { phase: "Expired" },
          fresh.metadata.resourceVersion as string,
        );
        t.obj = written;
        finalize(t, { outcome: "expired", approvers: assess(written).approvers });
        return;
      } catch (err) {
        if (err instanceof ConflictError) continue;
        unreachable(t, `could not mark it Expired: ${errText(err)}`);
        return;
      }
    }
  }

  /**
   * The request timed out while the API server could not be reached: fail closed, never honour
   * it later, and keep trying in the background to write Expired so that approvers see it.
   */
  function unreachable(t: Tracked, detail: string) {
    finalize(t, {
      outcome: "unavailable",
      approvers: [],
      message: `approval service unreachable: access request ${t.name} ${detail}; the operation was not performed`,
    });
    let delay = 2000;
    const retry = async () => {
      if (closed) return;
      try {
        const fresh = await store.get(t.name);
        if (fresh && (fresh.status?.phase ?? "Pending") === "Pending")
          await store.patchStatus(t.name, { phase: "Expired" }, fresh.metadata.resourceVersion as string);
      } catch {
        delay = Math.min(delay * 2, 60_000);
        if (delay < 60_000) setTimeout(() => void retry(), delay).unref?.();
      }
    };
    setTimeout(() => void retry(), delay).unref?.();
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

  const ready = store.ready.then(() => {
    for (const obj of store.list()) {
      if (!belongsHere(obj) || !obj.metadata.uid || byUid.has(obj.metadata.uid)) continue;
      const t = adopt(obj);
      logger.info({ request: t.name, state: t.final?.outcome ?? "pending" }, "re-attached access request");
    }
  });
  const unsubscribe = store.subscribe((obj, event) => {
    const t = obj.metadata?.uid ? byUid.get(obj.metadata.uid) : undefined;
    if (!t) return; // not created by this sidecar: ignored, whatever it says
    if (event === "delete") {
      finalize(t, {
        outcome: "denied",
        approvers: [],
        deniedBy: "(deleted)",
        reason: "the request was deleted",
      });
      return;
    }
    observe(t, obj);
  });

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

  function buildSpec(input: ApprovalInput, s: ApprovalSettings): AccessRequestSpec {
    const d = input.decision;
    const rawSummary = input.summary ?? summarizeOperation(input.operation);
    const summary = cleanText(masker, rawSummary, 4096, { multiline: true });
    const fingerprint =
      input.fingerprint?.slice(0, 128) ??
      operationFingerprint(
        fingerprintKey,
        input.protocol,
        rawSummary,
        operationFingerprintParts(input.operation),
      );
    const reason = input.reason ? cleanText(masker, input.reason, 1024) : "";
    const subject = input.subject;
    return {
      policy: (d.policy ?? "(unknown)").slice(0, 253),
      rule: (d.rule ?? "unknown").slice(0, 63),
      connection: input.connection.slice(0, 63),
      requester: {
        ...(subject.user ? { user: subject.user, groups: subject.groups.slice(0, 64) } : {}),
        serviceAccount: subject.serviceAccount,
        pod: workload.podName,
        ...(opts.podUid ? { podUid: opts.podUid } : {}),
      },
      operation: { protocol: input.protocol, summary, fingerprint },
      ...(reason ? { reason } : {}),
      approvers: {
        ...(s.approvers.groups.length ? { groups: s.approvers.groups } : {}),
        ...(s.approvers.users.length ? { users: s.approvers.users } : {}),
      },
      minApprovals: s.minApprovals,
      ...(s.grantTtl ? { grantTtl: s.grantTtl } : {}),
      expiresAt: new Date(now() + s.timeoutMs).toISOString(),
    };
  }

  function who(spec: AccessRequestSpec): string {
    const parts = [
      ...(spec.approvers.groups ?? []).map((g) => `group ${g}`),
      ...(spec.approvers.users ?? []).map((u) => `user ${u}`),
    ];
    return `${spec.minApprovals} approval${spec.minApprovals > 1 ? "s" : ""} from ${parts.join(" or ")}`;
  }

  function outcome(t: Tracked): ApprovalOutcome {
    const f = t.final;
    if (!f) {
      const a = assess(t.obj);
      return {
        approved: false,
        request: t.name,
        status: "pending",
        approvers: a.approvers,
        message:
          `approval required: access request ${t.name} is pending (${a.approvers.length}/${t.obj.spec.minApprovals}; ` +
          `needs ${who(t.obj.spec)}); ask an approver to run \`${hint(t.name)}\`, then retry`,
      };
    }
    switch (f.outcome) {
      case "approved":
        return { approved: true, request: t.name, approvers: f.approvers, grant: false };
      case "denied":
        return {
          approved: false,
          request: t.name,
          status: "denied",
          approvers: f.approvers,
          message: `access request ${t.name} was denied by ${f.deniedBy}${f.reason ? `: ${f.reason}` : ""}`,
        };
      case "expired":
        return {
          approved: false,
          request: t.name,
          status: "expired",
          approvers: f.approvers,
          message: `access request ${t.name} expired without enough approvals (${who(t.obj.spec)}); retry to ask again`,
        };
      case "unavailable":
        return { approved: false, request: t.name, status: "unavailable", message: f.message };
    }
  }

  /** Marks a single-use approval used (so an async retry cannot replay it) and records that. */
  function consume(t: Tracked) {
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
    writeStatus(t, { conditions }, "that the approval was used");
  }

  /** The requester's request for the same operation that may still answer it. */
  function findExisting(key: string): Tracked | undefined {
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

  async function create(
    spec: AccessRequestSpec,
    s: ApprovalSettings,
    signal: AbortSignal,
  ): Promise<Tracked | ApprovalOutcome> {
    const deadline = toMs(spec.expiresAt);
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
        const created = await store.create(obj);
        const t = adopt(created);
        // The watch may already have seen a newer version (a very fast approver).
        const cached = store.list().find((o) => o.metadata.uid === t.uid);
        if (cached) observe(t, cached);
        writeStatus(t, { phase: "Pending" }, "phase Pending");
        notify({ kind: "requested", request: t.obj, approveHint: hint(t.name) });
        logger.info(
          { request: t.name, rule: spec.rule, connection: spec.connection, mode: s.mode },
          "access request created",
        );
        return t;
      } catch (err) {
        if (err instanceof ConflictError) continue; // name taken: draw another
        lastError = errText(err);
        if (err instanceof RejectedError) {
          opts.metrics?.decisions.inc({ outcome: "unavailable", group: approverGroupLabel(spec.approvers) });
          return {
            approved: false,
            request: NO_REQUEST,
            status: "unavailable",
            message: `approval service refused the access request: ${lastError}`,
          };
        }
      }
      logger.warn({ err: lastError, retryInMs: delay }, "could not create an access request; retrying");
      if (s.mode === "async" || now() + delay >= deadline || signal.aborted || closed) break;
      await sleep(delay, signal);
      delay = Math.min(delay * 2, opts.retryMaxMs ?? 5000);
    }
    if (!signal.aborted && s.mode === "wait") await sleep(Math.max(0, deadline - now()), signal);
    opts.metrics?.decisions.inc({ outcome: "unavailable", group: approverGroupLabel(spec.approvers) });
    return {
      approved: false,
      request: NO_REQUEST,
      status: "unavailable",
      message:
        s.mode === "wait"
          ? `approval service unreachable: no access request could be created within ${durationText(s.timeoutMs)} (${lastError}); the operation was not performed`
          : `approval service unreachable: no access request could be created (${lastError}); retry later`,
    };
  }

  function waitFor(t: Tracked, signal: AbortSignal): Promise<boolean> {
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
  }

  return {
    store,
    ready,
    async request(input) {
      if (closed)
        return {
          approved: false,
          request: NO_REQUEST,
          status: "unavailable",
          message: "the sidecar is shutting down",
        };
      let s: ApprovalSettings;
      try {
        s = approvalSettings(input.decision);
      } catch (err) {
        return { approved: false, request: NO_REQUEST, status: "unavailable", message: errText(err) };
      }
      const problem = await checkTrust();
      if (problem) {
        logger.error({ problem }, "approvals are not trustworthy here; refusing operations that need one");
        return { approved: false, request: NO_REQUEST, status: "unavailable", message: problem };
      }
      const spec = buildSpec(input, s);
      const key = requestKey(spec);

      // Requests from before a restart must be known before deciding anything.
      const attached = await Promise.race([
        ready.then(() => true),
        sleep(Math.min(3000, s.timeoutMs), input.signal).then(() => false),
      ]);
      if (!attached) logger.warn("access requests from before the restart are not re-attached yet");

      let t = findExisting(key);
      if (t?.final?.outcome === "approved") {
        // This very operation was approved: it passes (once, or again while its grant is open).
        const direct = !t.consumed;
        consume(t);
        if (!direct) opts.metrics?.grantsUsed.inc();
        return { ...outcome(t), grant: !direct };
      }
      const grant = grants.get(grantKey(spec));
      if (grant && grant.until > now()) {
        opts.metrics?.grantsUsed.inc();
        return { approved: true, request: grant.request, approvers: grant.approvers, grant: true };
      }
      if (grant) grants.delete(grantKey(spec));
      if (!t) {
        const made = await create(spec, s, input.signal);
        if (!("uid" in made)) return made;
        t = made;
      }
      if (!t.final && s.mode === "wait") {
        input.onWaiting?.({ request: t.name, approveHint: hint(t.name), expiresAt: t.obj.spec.expiresAt });
        const decided = await waitFor(t, input.signal);
        if (!decided)
          return {
            ...outcome(t),
            message: `${input.signal.reason instanceof ApprovalWaitCanceled ? "the client canceled the wait" : "the agent went away"}; access request ${t.name} stays pending and a retry of the same operation picks it up`,
          };
        if (!t.final)
          return {
            approved: false,
            request: t.name,
            status: "unavailable",
            message: "the sidecar is shutting down",
          };
      }
      const result = outcome(t);
      if (result.approved) consume(t);
      return result;
    },
    grants() {
      const out: GrantInfo[] = [];
      for (const g of grants.values()) {
        if (g.until <= now()) continue;
        out.push({
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
        });
      }
      return out;
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
      await opts.notifier?.close();
      await store.close();
    },
  };
}
