// What every SSH channel type of one agent session shares: the session's operation log, the
// decision → approval → upstream step (`authorize`), and the upstream connection opened for the
// first allowed operation. Channel types live in channels.ts (session channels: exec, shell,
// SFTP) and forwarding.ts (port forwarding); session.ts wires them to ssh2's events.
import type { Logger } from "pino";
import type { ServerChannel } from "ssh2";
import { type ApprovalGate, waitingText } from "../../approvals/gate.ts";
import type { AuditOperation } from "../../audit/events.ts";
import { recordApproval, seekApproval } from "../../operations/approval-step.ts";
import type { Operation, OperationLog } from "../../operations/lifecycle.ts";
import type { ConnectionMasking } from "../../operations/masking.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Decision, Operation as PolicyOperation, Subject } from "../../policy/types.ts";
import type { Recorder, TerminalRecording } from "../../recording/index.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { type Upstream, UpstreamError } from "./upstream.ts";

/** Exit status of a refused exec/shell (POSIX "found but cannot execute"). */
export const EXIT_DENIED = 126;
/** Exit status when the upstream cannot be reached or refuses us (what ssh itself uses). */
export const EXIT_UPSTREAM = 255;

export interface SessionDeps {
  ctx: SidecarContext;
  recorder: Recorder;
  approvals: ApprovalGate | undefined;
  connectTimeoutMs: number;
  idleFlushMs: number;
  draining(): boolean;
  /** Operation bookkeeping for drain. */
  begin(): void;
  done(): void;
}

/** The session state channel handlers read and the operation steps they call. */
export interface SshCore {
  readonly deps: SessionDeps;
  readonly ctx: SidecarContext;
  readonly id: string;
  readonly connection: CompiledConnection;
  readonly log: Logger;
  readonly ops: OperationLog;
  /** The session's recording, once the session is ready. */
  recording(): TerminalRecording | undefined;
  subject(): Subject;
  /** The policy's decision for an SSH operation of this session. */
  evaluate(op: PolicyOperation): Decision;
  masking(): ConnectionMasking;
  /** The upstream connection, opened on first use (one per agent session). */
  upstream(): Promise<Upstream>;
  /** The upstream connection if one was opened. */
  openedUpstream(): Promise<Upstream> | undefined;
  /** Registers an abort for an approval wait (aborted when the session closes). */
  aborts: Set<AbortController>;
  /**
   * Registers an open session channel's stderr for notices that have no channel of their own;
   * returns the unregister function. Notices sent while no channel was open are delivered to the
   * next one (OpenSSH sends `-R` requests before it opens the session channel).
   */
  attachStderr(write: (line: string) => void): () => void;
  /** Writes `airlock: <text>` on the stderr of the open session channels. */
  notice(text: string): void;
}

export function beginOperation(core: SshCore, op: AuditOperation): Operation {
  return core.ops.begin(op);
}

/** The command as audit events, approvers and markers show it: request masking rules applied. */
export function forAudit(core: SshCore, text: string): string {
  const slot = core.masking().request;
  if ("error" in slot || !slot.masker) return text;
  return slot.masker.maskText(text).text;
}

/** Counts masking findings on the operation (by detector). */
export function onFindings(rec: Operation) {
  return (findings: readonly { detector: string }[]) => {
    for (const f of findings) rec.addMasked({ [f.detector]: 1 });
  };
}

/** Runs tracked work (drain waits for it); failures are logged, never thrown at ssh2. */
export async function track(core: SshCore, work: () => Promise<void>): Promise<void> {
  core.deps.begin();
  try {
    await work();
  } catch (err) {
    core.log.error({ err: err instanceof Error ? err.message : String(err) }, "ssh guard failure");
  } finally {
    core.deps.done();
  }
}

async function approve(
  core: SshCore,
  rec: Operation,
  decision: Decision,
  channel: ServerChannel | undefined,
): Promise<string | undefined> {
  const abort = new AbortController();
  core.aborts.add(abort);
  const onClose = () => abort.abort();
  channel?.once("close", onClose);
  try {
    const result = await seekApproval(
      {
        gate: core.deps.approvals,
        warn: (message, err) =>
          core.log.warn({ err: err instanceof Error ? err.message : String(err) }, message),
      },
      decision,
      {
        connection: core.connection.spec.name,
        protocol: "ssh",
        subject: core.subject(),
        operation: rec.operation,
        ...(rec.operation.kind === "ssh-exec" ? { summary: rec.operation.command } : {}),
        session: core.id,
        // The agent hears at once that (and for whom) the command waits: a line on stderr.
        onWaiting: (w) => {
          if (channel?.writable) channel.stderr.write(`airlock: ${waitingText(w)}\r\n`);
        },
      },
      abort.signal,
    );
    recordApproval(rec, decision, result);
    return result.approved ? undefined : result.message;
  } finally {
    core.aborts.delete(abort);
    channel?.off("close", onClose);
  }
}

/**
 * Decision → refusal, approval wait, or the open upstream; undefined when refused (`refuseWith`
 * was called and must end the operation).
 */
export async function authorize(
  core: SshCore,
  rec: Operation,
  decision: Decision,
  refuseWith: (message: string, status: number) => void,
  channel?: ServerChannel,
): Promise<Upstream | undefined> {
  rec.decide(decision);
  if (decision.action === "deny") {
    // "denied by rule R ..." when a rule decided; "denied: <why>" for default deny and refusals.
    refuseWith(
      decision.reason.startsWith("denied by rule") ? decision.reason : `denied: ${decision.reason}`,
      EXIT_DENIED,
    );
    return undefined;
  }
  if (core.deps.draining()) {
    rec.upstream = { error: "draining" };
    refuseWith("the sidecar is shutting down; reconnect", EXIT_UPSTREAM);
    return undefined;
  }
  // Masking is resolved before anyone is asked to approve: a broken configuration refuses now.
  const slot = core.masking().response;
  if ("error" in slot) {
    rec.upstream = { error: "masking_config" };
    refuseWith(
      `the connection's masking rules are invalid (${slot.error}); refusing rather than leaking`,
      EXIT_DENIED,
    );
    return undefined;
  }
  if (decision.action === "requireApproval") {
    const refused = await approve(core, rec, decision, channel);
    if (refused !== undefined) {
      refuseWith(refused, EXIT_DENIED);
      return undefined;
    }
  }
  try {
    return await core.upstream();
  } catch (err) {
    const code = err instanceof UpstreamError ? err.code : "connect_failed";
    rec.upstream = { error: code };
    refuseWith(
      `upstream unavailable (${code}): ${err instanceof Error ? err.message : String(err)}`,
      EXIT_UPSTREAM,
    );
    return undefined;
  }
}
