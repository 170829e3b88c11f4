// A statement a human approved, run under a credential minted for it (credentials.vault.approvedPath):
// the session's upstream is set aside, a connection of its own is opened as the approved role, the
// statement — one simple Query, or one Parse/Bind/Describe/Execute/Sync batch of the unnamed
// statement — runs there with the session's reply matching, masking and audit, and the connection
// is closed and its lease revoked once the server answered the batch (or the agent left the batch
// open without Sync too long: the session ends). What it needs of the session is checked before
// anyone is asked, so an approver never approves what cannot run that way.
import type { Socket } from "node:net";
import type { Logger } from "pino";
import type { CredentialAudit, CredentialSource, HeldCredential } from "../../credentials/index.ts";
import type { ClassifiedStatement } from "../../sql/index.ts";
import type { Connected } from "./connect.ts";
import type { Duplex } from "./duplex.ts";
import type { BackendFramer } from "./framing.ts";
import {
  flushMessage,
  ProtocolError,
  parseBind,
  parseExecute,
  parseTarget,
  T,
  terminateMessage,
} from "./protocol.ts";
import type { ReplyMatcher } from "./replies.ts";
import type { SessionStatements } from "./statements.ts";
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

/** What the session writes to, reads replies from, cancels and audits under: swapped for a run. */
export interface Attachment {
  socket: Socket | undefined;
  framer: BackendFramer | undefined;
  key: { pid: number; secret: number } | undefined;
  credential: CredentialAudit | undefined;
}

export interface ApprovedRun {
  readonly up: UpstreamSession;
  readonly credential: HeldCredential | undefined;
  /** The session's own attachment, set aside while the run lasts. */
  readonly main: Attachment;
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
  main: Attachment,
): ApprovedRun {
  const { promise: done, resolve } = Promise.withResolvers<void>();
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

/** What an approved run needs of its session. */
export interface RunHost {
  readonly session: string;
  readonly logger: Logger;
  readonly io: Duplex;
  readonly replies: ReplyMatcher;
  readonly statements: SessionStatements;
  /** SessionDeps.approvedBatchTimeoutMs. */
  readonly batchTimeoutMs: number;
  connectionName(): string;
  /** Opens a connection of the session's as the approved role `source` mints. */
  connect(source: CredentialSource): Promise<Connected>;
  attached(): Attachment;
  attach(a: Attachment): void;
  /** Reads `up`'s answers into the session while `current()`. */
  readFrom(up: UpstreamSession, current: () => boolean): void;
  /** Resolves once every message forwarded so far is answered. */
  whenAnswered(): Promise<void>;
  /** The session is closed or closing. */
  ending(): boolean;
  /** The session's pump waits (an approval inside the batch is asked). */
  blocked(): boolean;
  fatal(err: unknown): void;
}

export type RunRefusal = { kind: "sqlApprovedNotAlone" | "sqlApprovedCredential"; why: string };

/** The approved runs of one session: at most one at a time. */
export class ApprovedRuns {
  readonly #h: RunHost;
  current: ApprovedRun | undefined;

  constructor(host: RunHost) {
    this.#h = host;
  }

  /**
   * Sets the session's upstream aside and opens a connection of its own for an approved
   * statement, once everything sent before it is answered. False: it cannot run (`refuse` was
   * told why) or the session is ending.
   */
  async start(source: CredentialSource, refuse: (r: RunRefusal) => void): Promise<boolean> {
    const h = this.#h;
    await h.whenAnswered();
    if (h.ending()) return false;
    let failure: RunRefusal | undefined;
    let c: Connected | undefined;
    if (h.replies.txStatus !== "I")
      failure = {
        kind: "sqlApprovedNotAlone",
        why: "the statements before it opened a transaction block; send it outside BEGIN ... COMMIT (it commits on its own)",
      };
    else
      try {
        c = await h.connect(source);
      } catch (err) {
        failure = { kind: "sqlApprovedCredential", why: err instanceof Error ? err.message : String(err) };
      }
    if (h.ending()) {
      c?.up.socket.destroy();
      c?.credential?.release();
      return false;
    }
    if (!c) {
      refuse(failure ?? { kind: "sqlApprovedCredential", why: "" });
      return false;
    }
    const up = c.up;
    const main = h.attached();
    // Notifications on the session's own connection wait until the approved statement is done.
    main.socket?.pause();
    const run = approvedRun(up, c.credential, main);
    this.current = run;
    h.io.attachUpstream(up.socket);
    h.attach({
      socket: up.socket,
      framer: up.framer,
      key: { pid: up.pid, secret: up.secret },
      credential: c.credential?.audit,
    });
    h.logger.info(
      { session: h.session, connection: h.connectionName(), lease: c.credential?.audit.lease },
      "postgres: an approved statement runs under its own credential",
    );
    h.readFrom(up, () => this.current === run);
    this.arm();
    return true;
  }

  /**
   * (Re)starts the wait for the approved batch's Sync. It counts only while the agent owes the
   * next message: not while an approval inside the batch is asked, nor while the server has not
   * taken what was sent (the Sync may be behind it) or still works on it.
   */
  arm() {
    const run = this.current;
    if (!run) return;
    clearTimeout(run.timer);
    if (run.synced) return;
    const h = this.#h;
    const ms = h.batchTimeoutMs;
    run.timer = setTimeout(() => {
      if (this.current !== run || run.synced) return;
      if (h.blocked() || run.up.socket.writableLength > 0) return this.arm();
      if (h.replies.length > 0) {
        // Without Flush the server holds its answers until Sync: ask for them, so that a
        // statement still running is told from one done and waiting.
        h.io.toUp(flushMessage());
        h.io.flushUp();
        return this.arm();
      }
      h.fatal(
        new ProtocolError(
          `terminating connection: the approved statement's batch was left open without Sync for ${ms} ms; its credential is revoked and nothing of it commits`,
          "25P03",
        ),
      );
    }, ms);
    run.timer.unref();
  }

  /** The batch's end (its Sync, or the Query itself) went upstream. */
  synced() {
    const run = this.current;
    if (!run || run.synced) return;
    run.synced = true;
    clearTimeout(run.timer);
    this.#h.io.flushUp();
  }

  /** The approved batch is answered: back to the session's own connection; the lease is revoked. */
  end() {
    const run = this.current;
    if (!run) return;
    this.current = undefined;
    run.up.socket.end(terminateMessage());
    run.credential?.release();
    const h = this.#h;
    h.attach(run.main);
    // What the batch named (the unnamed statement and portal) exists on that connection only.
    h.statements.prepared.delete("");
    h.statements.portals.delete("");
    run.finish();
    h.io.flow();
  }

  /** The session closes under a run: its connection goes, its lease is revoked. */
  abandon() {
    const run = this.current;
    if (!run) return;
    this.current = undefined;
    run.main.socket?.destroy();
    run.credential?.release();
    run.finish();
  }
}
