// The operation lifecycle every guard shares: begin → decide → (approve) → forward → finish.
// A protocol handler begins an operation when it has turned bytes into one, records what the
// decision layer answered, and finishes it when the outcome is known — before the response is
// released to the agent. Finishing is the only way an audit event is built and emitted, and it
// happens exactly once per operation:
// - `finish()` on a finished operation throws (a second audit event would invent an operation);
// - `end(error)` finishes it only if it is still open, for the paths that learn late that an
//   operation is over (the agent went away, the session closed);
// - a session's `OperationLog.close(error)` ends whatever is still open, so no operation that
//   began is ever left without its event.
// A failing audit sink is handled in one place too: the session's `failClosed` (see AuditFailure).
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import type { AuditEvent, AuditIdentity, AuditOperation } from "../audit/events.ts";
import type { AuditSink } from "../audit/sink.ts";
import type { Decision } from "../policy/types.ts";
import type { CounterCell, HistogramCell } from "../telemetry/hot-metrics.ts";
import type { Metrics } from "../telemetry/metrics.ts";

export type Protocol = AuditEvent["protocol"];
export type AuditDecision = AuditEvent["decision"];
export type AuditApproval = NonNullable<AuditEvent["approval"]>;
export type AuditUpstream = NonNullable<AuditEvent["upstream"]>;

/** What the lifecycle needs of the sidecar: where events go, what they count in, where failures go. */
export interface LifecycleDeps {
  readonly audit: AuditSink;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/**
 * The audit sink threw. Audit lines are the sidecar's record of what agents did, so an operation
 * whose event could not be handed over must not reach the agent as done: the session's
 * `failClosed` gets this and closes the agent's connection (nothing more is released on it).
 * The stdout writer itself stops the sidecar when stdout is gone (docs/audit.md); this covers
 * any other sink.
 */
export class AuditFailure extends Error {
  constructor(cause: unknown) {
    super(`the audit record could not be written: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "AuditFailure";
  }
}

const NOT_EVALUATED: AuditDecision = Object.freeze({ action: "deny", reason: "not evaluated" });

// Decisions are shared: the policy engine and the SQL judgement cache hand out the same Decision
// object statement after statement, so its audit shape is built once and frozen (audit/line.ts
// serializes frozen values once).
const auditDecisions = new WeakMap<Decision, AuditDecision>();

/** The audit shape of a decision: action, policy, rule and reason, never approval settings. */
export function auditDecision(d: Decision): AuditDecision {
  let a = auditDecisions.get(d);
  if (!a) {
    a = Object.freeze({
      action: d.action,
      ...(d.policy !== undefined ? { policy: d.policy } : {}),
      ...(d.rule !== undefined ? { rule: d.rule } : {}),
      reason: d.reason,
    });
    auditDecisions.set(d, a);
  }
  return a;
}

/** Metric cells of one (connection, protocol): resolved once per session, updated per operation. */
interface Cells {
  operations: Record<Decision["action"], CounterCell>;
  upstreamSeconds: HistogramCell;
}

const cellCache = new WeakMap<Metrics, Map<string, Cells>>();

function cellsFor(metrics: Metrics, connection: string, protocol: Protocol): Cells {
  let byKey = cellCache.get(metrics);
  if (!byKey) {
    byKey = new Map();
    cellCache.set(metrics, byKey);
  }
  const key = `${protocol}\u0000${connection}`;
  let cells = byKey.get(key);
  if (!cells) {
    const op = (decision: Decision["action"]) => metrics.operations.cell({ connection, protocol, decision });
    cells = {
      operations: { allow: op("allow"), deny: op("deny"), requireApproval: op("requireApproval") },
      upstreamSeconds: metrics.upstreamSeconds.cell({ connection, protocol }),
    };
    byKey.set(key, cells);
  }
  return cells;
}

/** One operation from the moment a handler recognized it until its audit event. */
export class Operation {
  readonly started: number;
  operation: AuditOperation;
  decision: AuditDecision = NOT_EVALUATED;
  approval: AuditApproval | undefined;
  /** Masked values by detector; undefined until something was masked. */
  masked: Record<string, number> | undefined;
  upstream: AuditUpstream | undefined;
  /** SQL: rows returned or affected. */
  rows: number | undefined;
  readonly #log: OperationLog;
  #finished = false;

  constructor(log: OperationLog, operation: AuditOperation, started = performance.now()) {
    this.#log = log;
    this.operation = operation;
    this.started = started;
  }

  get finished(): boolean {
    return this.#finished;
  }

  get session(): string {
    return this.#log.session;
  }

  get connection(): string {
    return this.#log.connection;
  }

  /** Who is asking: the scope's identity (a guard sets it once the end user is verified). */
  get identity(): AuditIdentity {
    return this.#log.identity;
  }

  set identity(identity: AuditIdentity) {
    this.#log.identity = identity;
  }

  /** Records the decision that governs this operation (the last one recorded is audited). */
  decide(decision: Decision): this {
    this.decision = auditDecision(decision);
    return this;
  }

  /** Records the approval (or grant) that let the operation through. */
  approved(approval: AuditApproval): this {
    this.approval = approval;
    return this;
  }

  /** Adds masking findings by detector; counted in metrics when the operation finishes. */
  addMasked(counts: Readonly<Record<string, number>>): void {
    for (const detector in counts) {
      const n = counts[detector] as number;
      if (n <= 0) continue;
      if (!this.masked) this.masked = {};
      const masked = this.masked;
      masked[detector] = (masked[detector] ?? 0) + n;
    }
  }

  /** A mutable bag for masking code that counts into a plain record as it goes. */
  maskCounts(): Record<string, number> {
    if (!this.masked) this.masked = {};
    return this.masked;
  }

  elapsedMs(): number {
    return Math.round((performance.now() - this.started) * 1000) / 1000;
  }

  /**
   * Ends the operation and emits its audit event; returns its duration (ms). Exactly once: a
   * second call is a bug in the caller and throws.
   */
  finish(): number {
    if (this.#finished) throw new Error("operation finished twice (its audit event was already emitted)");
    this.#finished = true;
    return this.#log.emit(this);
  }

  /**
   * Ends the operation if it is still open, recording `error` as its upstream outcome (unless an
   * outcome is already known). Returns whether this call ended it. For late paths: the agent went
   * away, the session closed, a stream ended early.
   */
  end(error?: string): boolean {
    if (this.#finished) return false;
    if (error !== undefined && this.upstream === undefined) this.upstream = { error };
    this.finish();
    return true;
  }
}

export interface OperationLogScope {
  /** The agent connection (one id per session). */
  readonly session: string;
  /** Policy connection name ("" when the destination matched none). */
  readonly connection: string;
  readonly protocol: Protocol;
  /** Who is asking, as audited; a session may set it once the user is known. */
  identity: AuditIdentity;
  /** Closes the agent's connection when an audit event cannot be written (see AuditFailure). */
  failClosed(err: AuditFailure): void;
}

/**
 * The operations of one session on one connection: begins them, builds and emits their audit
 * events (the one place that does), and ends what is still open when the session closes.
 */
export class OperationLog {
  readonly session: string;
  readonly connection: string;
  readonly protocol: Protocol;
  identity: AuditIdentity;
  /** The leased credential the session runs under, once known (audited with each operation). */
  credential: AuditEvent["credential"];
  readonly #deps: LifecycleDeps;
  readonly #cells: Cells;
  readonly #failClosed: (err: AuditFailure) => void;
  readonly #open = new Set<Operation>();

  constructor(deps: LifecycleDeps, scope: OperationLogScope) {
    this.#deps = deps;
    this.session = scope.session;
    this.connection = scope.connection;
    this.protocol = scope.protocol;
    this.identity = scope.identity;
    this.#failClosed = scope.failClosed;
    this.#cells = cellsFor(deps.metrics, scope.connection, scope.protocol);
  }

  /** Begins an operation; it stays open (see close()) until finished. */
  begin(operation: AuditOperation, started?: number): Operation {
    const op = new Operation(this, operation, started);
    this.#open.add(op);
    return op;
  }

  /** Upstream latency of this scope, for handlers that time forwarded operations. */
  get upstreamSeconds(): HistogramCell {
    return this.#cells.upstreamSeconds;
  }

  /** Operations begun and not yet finished. */
  get open(): number {
    return this.#open.size;
  }

  /** Ends every open operation with `error` (the session is over). */
  close(error: string): void {
    for (const op of [...this.#open]) op.end(error);
  }

  /** @internal Called by Operation.finish(); returns the audited duration (ms). */
  emit(op: Operation): number {
    this.#open.delete(op);
    const durationMs = op.elapsedMs();
    // (Optional fields are assigned, not spread into the literal: this runs once per statement.)
    const event: AuditEvent = {
      session: this.session,
      connection: this.connection,
      protocol: this.protocol,
      identity: this.identity,
      operation: op.operation,
      decision: op.decision,
      durationMs,
    };
    if (op.approval) event.approval = op.approval;
    const masked = op.masked;
    let anyMasked = false;
    if (masked) for (const _ in masked) anyMasked = true;
    if (anyMasked) event.masked = masked;
    if (op.upstream) event.upstream = op.upstream;
    if (op.rows !== undefined) event.rows = op.rows;
    if (this.credential) event.credential = this.credential;
    try {
      this.#deps.audit.emit(event);
    } catch (err) {
      this.#deps.logger.error(
        {
          connection: this.connection,
          protocol: this.protocol,
          err: err instanceof Error ? err.message : String(err),
        },
        "audit sink failed; closing the agent's connection",
      );
      this.#failClosed(new AuditFailure(err));
    }
    this.#cells.operations[op.decision.action].inc();
    if (anyMasked && masked) {
      const m = this.#deps.metrics.masked;
      for (const detector in masked)
        m.inc({ connection: this.connection, detector }, masked[detector] as number);
    }
    return durationMs;
  }
}
