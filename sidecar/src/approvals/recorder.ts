// How the tracker's bookkeeping leaves the process: status writes (in order per request, in the
// background, logged on failure: the decision itself is already made in memory), notifications
// (a failing notifier never fails an operation), the decision metrics and the log line.
import type { Logger } from "pino";
import type { AccessRequest, AccessRequestStatus } from "../../../api/src/index.ts";
import { type ApprovalMetricOutcome, type ApprovalMetrics, approverGroupLabel } from "./metrics.ts";
import type { Notice, Notifier } from "./notify.ts";
import type { Final } from "./outcomes.ts";
import type { ApprovalStore } from "./store.ts";

/** What the recorder needs of a tracked request. */
export interface Recorded {
  readonly name: string;
  readonly obj: AccessRequest;
  readonly createdMs: number;
  readonly grantUntil?: number | undefined;
  /** The chain of status writes, so they land in order. */
  writes: Promise<unknown>;
}

export interface RecorderOptions {
  store: ApprovalStore;
  logger: Logger;
  metrics?: ApprovalMetrics | undefined;
  notifier?: Notifier | undefined;
  now: () => number;
}

export interface Recorder {
  /** Queues a status patch behind the request's earlier ones; `what` names it in the warning. */
  writeStatus(t: Recorded, status: Partial<AccessRequestStatus>, what: string): void;
  notify(notice: Notice): void;
  /** A request was decided: count it, write its phase (and grant expiry), tell the approvers, log it. */
  decided(t: Recorded, final: Final): void;
}

const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));

export function createRecorder(opts: RecorderOptions): Recorder {
  const { store, logger, now } = opts;

  function notify(notice: Notice) {
    try {
      opts.notifier?.notify(notice);
    } catch (err) {
      logger.warn({ err: errText(err) }, "approval notification could not be queued");
    }
  }

  function writeStatus(t: Recorded, status: Partial<AccessRequestStatus>, what: string) {
    t.writes = t.writes
      .then(() => store.patchStatus(t.name, status))
      .catch((err) => logger.warn({ request: t.name, err: errText(err) }, `could not record ${what}`));
  }

  function decided(t: Recorded, final: Final) {
    const status = t.obj.status ?? {};
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

  return { writeStatus, notify, decided };
}
