// A statement a human approved, run under a credential minted for it (credentials.vault.approvedPath):
// the session's upstream is set aside, a connection of its own is opened as the approved role, the
// statement — one simple Query, or one Parse/Bind/Describe/Execute/Sync batch of the unnamed
// statement — runs there with the session's reply matching, masking and audit, and the connection
// is closed and its lease revoked once the server answered the batch (or the agent left the batch
// open without Sync too long: the session ends). What it needs of the session is checked before
// anyone is asked, so an approver never approves what cannot run that way.
import type { Socket } from "node:net";
import type { CredentialAudit, HeldCredential } from "../../credentials/index.ts";
import type { ClassifiedStatement } from "../../sql/index.ts";
import type { BackendFramer } from "./framing.ts";
import { parseBind, parseExecute, parseTarget, T } from "./protocol.ts";
import type { UpstreamSession } from "./upstream.ts";

/** Statement kinds whose effect would stay on the approved connection, or need the session's. */
const NOT_ALONE = new Set(["transaction", "twoPhaseCommit", "set", "housekeeping", "copyFrom"]);

export interface AloneContext {
  /** Transaction status of the session's last ReadyForQuery. */
  txStatus: string;
  /** Extended-protocol messages forwarded since the last Sync (its batch, or a Query's, is not its own). */
  unsynced: boolean;
  /** A COPY FROM STDIN the session sent is not answered yet: the server waits for its data. */
  copyOpen?: boolean;
  /** Transaction control the session sent is not answered yet: a block may be open by then. */
  transactionPending?: boolean;
  /** The session changed settings with SET: the approved connection would not have them. */
  settingsChanged: boolean;
  /** Parse: the statement's name ("" for the unnamed statement); undefined for a simple Query. */
  parseName?: string | undefined;
}

/** Why the statements cannot run alone on an approved connection, or undefined when they can. */
export function notAloneReason(
  statements: readonly ClassifiedStatement[],
  at: AloneContext,
): string | undefined {
  const kinds = [...new Set(statements.filter((s) => NOT_ALONE.has(s.kind)).map((s) => s.kind))];
  if (kinds.length)
    return `it contains ${kinds.join(", ")}, whose effect would stay on that connection; send the approved statement on its own`;
  if (statements.some((s) => s.effect !== undefined))
    return "it prepares, declares or closes named statements or cursors, which would stay on that connection; send the approved statement on its own";
  if (at.txStatus !== "I")
    return "the session is inside a transaction block; send it outside BEGIN ... COMMIT (it commits on its own)";
  if (at.parseName !== undefined && at.parseName !== "")
    return `named prepared statements (${JSON.stringify(at.parseName)}) are not kept across it; use the unnamed statement`;
  // Even a Query: the server would run it inside that batch (or skip it after an error there),
  // and what came before it may not be answered until the agent sends Sync.
  if (at.unsynced)
    return at.parseName === undefined
      ? "extended-protocol messages before it are not ended by Sync; send Sync before it"
      : "other messages precede it in the same batch; send Sync before its Parse";
  if (at.transactionPending)
    return "transaction control before it is not answered yet (it may open a transaction block); wait for its answer";
  if (at.copyOpen)
    return "a COPY FROM STDIN of this session is still open; end it (CopyDone or CopyFail) and wait for its answer first";
  if (at.settingsChanged)
    return "this session changed settings with SET, which that connection would not have; run it in a new session";
  return undefined;
}

/** The session's own upstream while an approved statement runs elsewhere. */
export interface SetAside {
  socket: Socket | undefined;
  framer: BackendFramer | undefined;
  key: { pid: number; secret: number } | undefined;
  credential: CredentialAudit | undefined;
}

export interface ApprovedRun {
  readonly up: UpstreamSession;
  readonly credential: HeldCredential | undefined;
  readonly main: SetAside;
  /** The batch's end went upstream (its Sync, or the Query itself): wait for its last answer. */
  synced: boolean;
  /** Until then: the agent may leave the batch open this long (SessionDeps.approvedBatchTimeoutMs). */
  timer: NodeJS.Timeout | undefined;
  readonly done: Promise<void>;
  finish(): void;
}

export function approvedRun(
  up: UpstreamSession,
  credential: HeldCredential | undefined,
  main: SetAside,
): ApprovedRun {
  let resolve: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolve = r;
  });
  const run: ApprovedRun = {
    up,
    credential,
    main,
    synced: false,
    timer: undefined,
    done,
    finish() {
      clearTimeout(run.timer);
      resolve();
    },
  };
  return run;
}

/**
 * What in an approved batch (after its Parse, before its Sync) is not part of it: anything but
 * Bind, Describe, Execute and Close of the unnamed statement and portal, Flush and Sync. Such a
 * message is refused; it would otherwise run under the approved credential.
 */
export function strayInApprovedBatch(f: { type: number; payload: Buffer }): string | undefined {
  switch (f.type) {
    case T.Flush:
    case T.Sync:
    case T.Terminate:
      return undefined;
    case T.Bind: {
      const b = parseBind(f.payload);
      return b.statement === "" && b.portal === "" ? undefined : ONLY_UNNAMED;
    }
    case T.Describe:
    case T.Execute:
    case T.Close: {
      const name =
        f.type === T.Execute
          ? parseExecute(f.payload).portal
          : parseTarget(f.payload, f.type === T.Close ? "Close" : "Describe").name;
      return name === "" ? undefined : ONLY_UNNAMED;
    }
    default:
      return "only Bind, Describe, Execute and Close of the unnamed statement and portal may follow its Parse before Sync";
  }
}

const ONLY_UNNAMED = "the approved batch may use the unnamed statement and portal only";
