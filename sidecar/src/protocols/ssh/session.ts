// One agent SSH connection: authentication (workload trust, or an OIDC token as the password),
// then every channel request judged on its own — exec (command analysis), shell, SFTP, port
// forwarding, agent forwarding — and, when allowed, bridged to a channel on one upstream SSH
// connection opened for this session with a fresh certificate. Output is masked on the way to the
// agent and recorded as asciicast. Each operation ends in exactly one audit event, emitted before
// its exit status is released to the agent. Refusals: see README.md in this directory.
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type {
  AuthContext,
  ClientChannel,
  Connection,
  PseudoTtyInfo,
  ServerChannel,
  Session,
  Client as Ssh2Client,
} from "ssh2";
import type { AuditEvent, AuditIdentity, AuditOperation } from "../../audit/events.ts";
import { isIdentityError } from "../../identity/index.ts";
import type { Masker, MaskFinding } from "../../masking/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Decision, Operation, Subject } from "../../policy/types.ts";
import type { Recorder, TerminalRecording } from "../../recording/index.ts";
import { type SidecarContext, subjectFor } from "../../runtime/context.ts";
import { type ApprovalGate, NO_APPROVAL_SERVICE } from "./approval.ts";
import { renderCommand } from "./command.ts";
import { decideExec } from "./decide.ts";
import { createOutputPipe } from "./output.ts";
import { connectUpstream, type Upstream, UpstreamError } from "./upstream.ts";

/** Exit status of a refused exec/shell (POSIX "found but cannot execute"). */
export const EXIT_DENIED = 126;
/** Exit status when the upstream cannot be reached or refuses us (what ssh itself uses). */
export const EXIT_UPSTREAM = 255;

/** Environment variables passed on to the upstream when the agent sets them; others are dropped. */
const FORWARDED_ENV = /^(LANG|LANGUAGE|LC_[A-Z_]+|TZ|COLORTERM)$/;
const JWT_LIKE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export type MaskerSlot = { masker: Masker | undefined } | { error: string };

export interface SessionDeps {
  ctx: SidecarContext;
  recorder: Recorder;
  approvals: ApprovalGate | undefined;
  connectTimeoutMs: number;
  idleFlushMs: number;
  masker(connection: CompiledConnection, direction: "request" | "response"): MaskerSlot;
  draining(): boolean;
  /** Operation bookkeeping for drain. */
  begin(): void;
  done(): void;
}

export interface SshSession {
  readonly id: string;
  close(): void;
}

interface Exit {
  code?: number;
  signal?: string;
  dump?: boolean;
  desc?: string;
}

interface OpRecord {
  op: AuditOperation;
  started: number;
  decision: AuditEvent["decision"];
  approval?: AuditEvent["approval"];
  masked: Record<string, number>;
  upstream?: AuditEvent["upstream"];
  audited: boolean;
}

/**
 * Exit statuses of upstream channels, recorded from the moment ssh2 hands the channel over: a fast
 * command's exit-status can arrive in the same packet burst as the channel confirmation, before an
 * awaiting caller could attach a listener (data waits in the stream buffer; events do not).
 */
const exits = new WeakMap<ClientChannel, Exit>();
function watchExit(ch: ClientChannel): ClientChannel {
  ch.on("exit", (code: number | null, signal?: string, dump?: boolean, desc?: string) => {
    exits.set(
      ch,
      code !== null && code !== undefined
        ? { code }
        : { signal: signal ?? "SIGKILL", dump: !!dump, desc: desc ?? "" },
    );
  });
  return ch;
}

interface ChannelState {
  pty?: PseudoTtyInfo;
  env: Record<string, string>;
  upstream?: ClientChannel;
}

export function startSession(
  deps: SessionDeps,
  agent: Connection,
  connection: CompiledConnection,
): SshSession {
  const { ctx } = deps;
  const id = randomUUID();
  const name = connection.spec.name;
  const log = ctx.logger.child({ session: id, connection: name, protocol: "ssh" });
  const workloadIdentity: AuditIdentity = {
    serviceAccount: ctx.workload.subject,
    pod: ctx.workload.podName,
    namespace: ctx.workload.namespace,
  };
  let subject: Subject = subjectFor(ctx.workload);
  let identity: AuditIdentity = workloadIdentity;
  let ready = false;
  let closed = false;
  let upstream: Promise<Upstream> | undefined;
  let recording: TerminalRecording | undefined;
  const aborts = new Set<AbortController>();
  const started = performance.now();

  const evaluate = (op: Operation): Decision => ctx.policies.current().evaluate(name, subject, op);

  const newRecord = (op: AuditOperation): OpRecord => ({
    op,
    started: performance.now(),
    decision: { action: "deny", reason: "not evaluated" },
    masked: {},
    audited: false,
  });

  const decide = (rec: OpRecord, decision: Decision) => {
    rec.decision = {
      action: decision.action,
      reason: decision.reason,
      ...(decision.policy !== undefined ? { policy: decision.policy } : {}),
      ...(decision.rule !== undefined ? { rule: decision.rule } : {}),
    };
    ctx.metrics.operations.inc({ connection: name, protocol: "ssh", decision: decision.action });
  };

  const audit = (rec: OpRecord) => {
    if (rec.audited) return;
    rec.audited = true;
    const event: AuditEvent = {
      session: id,
      connection: name,
      protocol: "ssh",
      identity,
      operation: rec.op,
      decision: rec.decision,
      durationMs: Math.round((performance.now() - rec.started) * 1000) / 1000,
    };
    if (rec.approval) event.approval = rec.approval;
    if (Object.keys(rec.masked).length > 0) event.masked = { ...rec.masked };
    if (rec.upstream) event.upstream = rec.upstream;
    try {
      ctx.audit.emit(event);
    } catch (err) {
      ctx.logger.error({ err: err instanceof Error ? err.message : String(err) }, "audit sink failed");
    }
  };

  const onFindings = (rec: OpRecord) => (findings: MaskFinding[]) => {
    for (const f of findings) {
      rec.masked[f.detector] = (rec.masked[f.detector] ?? 0) + 1;
      ctx.metrics.masked.inc({ connection: name, detector: f.detector });
    }
  };

  /** The command as audit events, approvers and markers show it: request masking rules applied. */
  const forAudit = (text: string): string => {
    const slot = deps.masker(connection, "request");
    if ("error" in slot || !slot.masker) return text;
    return slot.masker.maskText(text).text;
  };

  // --- authentication ---------------------------------------------------------------------

  let authRefused = false;
  let tokenMissing = false;
  const auditAuthRefusal = (reason: string, code: string) => {
    authRefused = true;
    const rec = newRecord({
      kind: "tcp",
      destination: `${connection.spec.target.host}:${connection.spec.target.port}`,
    });
    decide(rec, { action: "deny", policy: connection.policy, reason });
    rec.upstream = { error: code };
    audit(rec);
    log.info({ code }, `ssh authentication refused: ${reason}`);
  };
  const refuseAuth = (auth: AuthContext, reason: string, code: string) => {
    auditAuthRefusal(reason, code);
    auth.reject(["password"]);
  };
  agent.on("authentication", (auth: AuthContext) => {
    const current = ctx.policies.current().connections.get(name) ?? connection;
    const verifier = ctx.verifierFor(current);
    if (auth.method === "password" && (verifier || JWT_LIKE.test(auth.password))) {
      if (!verifier) {
        // A token nobody can verify is refused rather than ignored (as for HTTP): the agent
        // believes it acts for someone, and the policy cannot say for whom.
        refuseAuth(
          auth,
          "identity token refused (invalid_config: the policy has no identity.oidc issuer)",
          "invalid_identity",
        );
        return;
      }
      verifier.verify(auth.password).then(
        (user) => {
          subject = subjectFor(ctx.workload, user);
          identity = { ...workloadIdentity, user: user.user, groups: user.groups };
          auth.accept();
        },
        (err: unknown) => {
          if (!isIdentityError(err)) log.error({ err: String(err) }, "identity verification failed");
          refuseAuth(
            auth,
            `identity token refused (${isIdentityError(err) ? err.code : "internal_error"})`,
            "invalid_identity",
          );
        },
      );
      return;
    }
    if (current.requireUserToken) {
      // Ask for the password (the token). Clients try `none` and keys first: those attempts are
      // not audited one by one; a client that gives up without a token is audited at close.
      tokenMissing = true;
      auth.reject(["password"]);
      return;
    }
    // In-pod trust: the pod's own identity. Passwords that are not tokens are ignored, never kept.
    auth.accept();
  });

  agent.on("ready", () => {
    ready = true;
    ctx.metrics.sessions.inc({ connection: name, protocol: "ssh" });
    recording = deps.recorder.terminal({
      session: id,
      connection,
      protocol: "ssh",
      identity: {
        serviceAccount: identity.serviceAccount,
        ...(identity.pod ? { pod: identity.pod } : {}),
        ...(identity.namespace ? { namespace: identity.namespace } : {}),
        ...(identity.user ? { user: identity.user } : {}),
      },
    });
    log.debug({ user: identity.user }, "ssh session ready");
  });

  // --- upstream ---------------------------------------------------------------------------

  const connectOnce = async (): Promise<Upstream> => {
    const t0 = performance.now();
    const user = identity.user ?? subject.serviceAccount;
    const up = await connectUpstream({
      connection,
      secrets: ctx.secrets,
      keyId: `airlock:pod=${ctx.workload.namespace}/${ctx.workload.podName},user=${user},session=${id}`,
      // The certificate carries only what the policy could allow this session at all.
      permissions: {
        pty: evaluate({ kind: "ssh-shell" }).action !== "deny",
        portForwarding: evaluate({ kind: "ssh-forward", target: "*" }).action !== "deny",
      },
      connectTimeoutMs: deps.connectTimeoutMs,
    });
    ctx.metrics.upstreamSeconds.observe(
      { connection: name, protocol: "ssh" },
      (performance.now() - t0) / 1000,
    );
    log.info(
      {
        auth: up.auth,
        hostKey: up.hostKey,
        ...(up.certificate
          ? {
              certificate: {
                serial: up.certificate.serial.toString(),
                keyId: up.certificate.keyId,
                principals: up.certificate.principals,
                extensions: up.certificate.extensions,
                validBefore: up.certificate.validBefore.toISOString(),
              },
            }
          : {}),
      },
      "ssh upstream connected",
    );
    up.client.on("close", () => {
      if (!closed) agent.end();
    });
    if (closed) up.client.end();
    return up;
  };

  /** One upstream connection per agent session, opened for the first allowed operation. */
  const getUpstream = (): Promise<Upstream> => {
    if (!upstream) {
      upstream = connectOnce();
      upstream.catch((err: unknown) => {
        const code = err instanceof UpstreamError ? err.code : "connect_failed";
        ctx.metrics.upstreamErrors.inc({ connection: name, protocol: "ssh", reason: code });
        log.warn({ code }, `ssh upstream refused: ${err instanceof Error ? err.message : String(err)}`);
      });
    }
    return upstream;
  };

  // --- operations -------------------------------------------------------------------------

  const lineEnd = (state: ChannelState) => (state.pty ? "\r\n" : "\n");

  /** Refuses on an accepted channel: message on stderr, exit status, clean close. */
  const refuse = (
    channel: ServerChannel,
    state: ChannelState,
    rec: OpRecord,
    message: string,
    status: number,
  ) => {
    const text = `airlock: ${message}${lineEnd(state)}`;
    recording?.output(text);
    recording?.marker(`exit ${status}`);
    // As for HTTP refusals, `upstream` only says something when a step after the decision failed.
    audit(rec);
    if (!channel.writable) return;
    channel.stderr.write(text);
    channel.exit(status);
    channel.end();
  };

  type Gate = { ok: true } | { ok: false; message: string; error: string };

  const approve = async (rec: OpRecord, decision: Decision, channel?: ServerChannel): Promise<Gate> => {
    const rule = decision.rule ?? "(unnamed)";
    if (!deps.approvals) {
      return {
        ok: false,
        message: `${decision.reason}; ${NO_APPROVAL_SERVICE}`,
        error: "approval_unavailable",
      };
    }
    const abort = new AbortController();
    aborts.add(abort);
    const onClose = () => abort.abort();
    channel?.once("close", onClose);
    try {
      const outcome = await deps.approvals.request({
        connection: name,
        protocol: "ssh",
        decision,
        subject,
        operation: rec.op,
        ...(rec.op.kind === "ssh-exec" ? { summary: rec.op.command } : {}),
        session: id,
        signal: abort.signal,
      });
      if (outcome.approved) {
        rec.approval = {
          request: outcome.request,
          approvers: outcome.approvers ?? [],
          ...(outcome.grant !== undefined ? { grant: outcome.grant } : {}),
        };
        return { ok: true };
      }
      const status = outcome.status ?? "pending";
      rec.decision = {
        ...rec.decision,
        reason: `${decision.reason}; approval request ${outcome.request} ${status}`,
      };
      return {
        ok: false,
        message: `approval ${status === "denied" ? "denied" : status} for rule ${rule} (request ${outcome.request})${outcome.message ? `: ${outcome.message}` : ""}`,
        error: `approval_${status}`,
      };
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, "approval service failed");
      return {
        ok: false,
        message: `${decision.reason}; the approval service failed`,
        error: "approval_unavailable",
      };
    } finally {
      aborts.delete(abort);
      channel?.off("close", onClose);
    }
  };

  /** Decision → refusal, approval wait, or an open upstream; undefined when refused (already audited). */
  const authorize = async (
    rec: OpRecord,
    decision: Decision,
    refuseWith: (message: string, status: number) => void,
    channel?: ServerChannel,
  ): Promise<Upstream | undefined> => {
    decide(rec, decision);
    if (decision.action === "deny") {
      // "denied by rule R ..." when a rule decided; "denied: <why>" for default deny and refusals.
      refuseWith(
        decision.reason.startsWith("denied by rule") ? decision.reason : `denied: ${decision.reason}`,
        EXIT_DENIED,
      );
      return undefined;
    }
    if (deps.draining()) {
      rec.upstream = { error: "draining" };
      refuseWith("the sidecar is shutting down; reconnect", EXIT_UPSTREAM);
      return undefined;
    }
    if (decision.action === "requireApproval") {
      const gate = await approve(rec, decision, channel);
      if (!gate.ok) {
        rec.upstream = { error: gate.error };
        refuseWith(gate.message, EXIT_DENIED);
        return undefined;
      }
    }
    const slot = deps.masker(connection, "response");
    if ("error" in slot) {
      rec.upstream = { error: "masking_config" };
      refuseWith(
        `the connection's masking rules are invalid (${slot.error}); refusing rather than leaking`,
        EXIT_DENIED,
      );
      return undefined;
    }
    try {
      return await getUpstream();
    } catch (err) {
      const code = err instanceof UpstreamError ? err.code : "connect_failed";
      rec.upstream = { error: code };
      refuseWith(
        `upstream unavailable (${code}): ${err instanceof Error ? err.message : String(err)}`,
        EXIT_UPSTREAM,
      );
      return undefined;
    }
  };

  /** Pipes an agent channel and an upstream channel until the upstream closes; masks and records output. */
  const bridge = (channel: ServerChannel, up: ClientChannel, rec: OpRecord): Promise<Exit | undefined> => {
    const slot = deps.masker(connection, "response");
    const masker = "masker" in slot ? slot.masker : undefined;
    const pipeTo = (write: (b: Buffer) => boolean) =>
      createOutputPipe({
        masker,
        idleMs: deps.idleFlushMs,
        onFindings: onFindings(rec),
        record: (text) => recording?.output(text),
        emit: (b) => {
          if (!write(b)) {
            up.pause();
            channel.once("drain", () => up.resume());
          }
        },
      });
    const out = pipeTo((b) => (channel.writable ? channel.write(b) : true));
    const err = pipeTo((b) => (channel.writable ? channel.stderr.write(b) : true));
    up.on("data", (d: Buffer) => out.write(d));
    up.stderr.on("data", (d: Buffer) => err.write(d));
    channel.on("data", (d: Buffer) => {
      if (!up.write(d)) {
        channel.pause();
        up.once("drain", () => channel.resume());
      }
    });
    channel.on("end", () => up.end());
    return new Promise((resolve) => {
      let settled = false;
      const finish = () => {
        if (settled) return;
        settled = true;
        out.end();
        err.end();
        resolve(exits.get(up));
      };
      up.once("close", finish);
      channel.once("close", () => {
        if (!rec.audited && !settled) rec.upstream = { error: "agent_disconnected" };
        up.resume(); // it may be paused for a drain that will not come
        up.close();
        finish();
      });
    });
  };

  const complete = (channel: ServerChannel, rec: OpRecord, exit: Exit | undefined) => {
    if (!rec.upstream)
      rec.upstream = exit?.code !== undefined ? { status: exit.code } : { status: exit?.signal ?? "closed" };
    recording?.marker(exit?.code !== undefined ? `exit ${exit.code}` : `exit ${exit?.signal ?? "(none)"}`);
    audit(rec); // before the exit status reaches the agent
    if (!channel.writable) return;
    if (exit?.code !== undefined) channel.exit(exit.code);
    else if (exit?.signal) {
      try {
        channel.exit(exit.signal.replace(/^SIG/, ""), exit.dump, exit.desc);
      } catch {
        channel.exit(EXIT_UPSTREAM);
      }
    }
    channel.end();
  };

  const track = async (work: () => Promise<void>) => {
    deps.begin();
    try {
      await work();
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err) }, "ssh guard failure");
    } finally {
      deps.done();
    }
  };

  const ptyOptions = (state: ChannelState) =>
    state.pty
      ? {
          rows: state.pty.rows,
          cols: state.pty.cols,
          height: state.pty.height,
          width: state.pty.width,
          term: state.pty.term,
          modes: state.pty.modes,
        }
      : undefined;

  /** The upstream takes pty requests only when the certificate says permit-pty (shells allowed). */
  const ptyAllowed = (up: Upstream) => !up.certificate || up.certificate.extensions.includes("permit-pty");

  const openExec = (up: Upstream, command: string, state: ChannelState) =>
    new Promise<ClientChannel>((resolve, reject) => {
      // Without permit-pty the command runs without a terminal (as sshd does when it refuses one).
      const pty = ptyAllowed(up) ? ptyOptions(state) : undefined;
      up.client.exec(command, { env: state.env, ...(pty ? { pty } : {}) }, (err, ch) =>
        err ? reject(err) : resolve(watchExit(ch)),
      );
    });
  const openShell = (up: Upstream, state: ChannelState) =>
    new Promise<ClientChannel>((resolve, reject) => {
      up.client.shell((ptyAllowed(up) && ptyOptions(state)) || false, { env: state.env }, (err, ch) =>
        err ? reject(err) : resolve(watchExit(ch)),
      );
    });
  const openSubsystem = (client: Ssh2Client, subsystem: string) =>
    new Promise<ClientChannel>((resolve, reject) => {
      client.subsys(subsystem, (err, ch) => (err ? reject(err) : resolve(watchExit(ch))));
    });

  /** Runs an authorized session-channel operation end to end. */
  const runChannel = async (
    channel: ServerChannel,
    state: ChannelState,
    rec: OpRecord,
    decision: Decision,
    open: (up: Upstream) => Promise<ClientChannel>,
  ) => {
    const up = await authorize(rec, decision, (m, s) => refuse(channel, state, rec, m, s), channel);
    if (!up) return;
    if (!channel.writable) {
      rec.upstream = { error: "agent_disconnected" };
      audit(rec);
      return;
    }
    let upCh: ClientChannel;
    try {
      upCh = await open(up);
    } catch (err) {
      rec.upstream = { error: "channel_refused" };
      refuse(
        channel,
        state,
        rec,
        `the upstream refused the channel: ${err instanceof Error ? err.message : String(err)}`,
        EXIT_UPSTREAM,
      );
      return;
    }
    state.upstream = upCh;
    const exit = await bridge(channel, upCh, rec);
    state.upstream = undefined;
    complete(channel, rec, exit);
  };

  agent.on("session", (acceptSession) => {
    const session: Session = acceptSession();
    const state: ChannelState = { env: {} };
    session.on("pty", (accept, reject, info: PseudoTtyInfo) => {
      if (state.pty) return reject?.();
      state.pty = info;
      recording?.setInitialSize(info.cols, info.rows);
      accept?.();
    });
    session.on("env", (accept, _reject, info) => {
      if (FORWARDED_ENV.test(info.key)) state.env[info.key] = info.val;
      accept?.(); // others are dropped silently, as sshd does without AcceptEnv
    });
    session.on("window-change", (accept, _reject, info) => {
      state.upstream?.setWindow(info.rows, info.cols, info.height, info.width);
      recording?.resize(info.cols, info.rows);
      accept?.();
    });
    session.on("signal", (accept, _reject, info) => {
      state.upstream?.signal(info.name);
      accept?.();
    });
    session.on("x11", (_accept, reject) => {
      const rec = newRecord({ kind: "ssh-forward", target: "x11" });
      decide(rec, { action: "deny", policy: connection.policy, reason: "X11 forwarding is never allowed" });
      audit(rec);
      reject?.();
    });
    session.on("auth-agent", (_accept, reject) => {
      const rec = newRecord({ kind: "ssh-forward", target: "agent" });
      const d = evaluate({ kind: "ssh-forward", target: "agent" });
      decide(
        rec,
        d.action === "deny"
          ? d
          : {
              ...d,
              action: "deny",
              reason: `agent forwarding is not supported by the sidecar (it would hand the agent's keys to the upstream); ${d.reason}`,
            },
      );
      audit(rec);
      reject?.();
    });

    session.on("exec", (accept, _reject, info) => {
      const channel = accept();
      if (!channel) return;
      const t0 = performance.now();
      const { decision, analysis, command } = decideExec(evaluate, info.command, connection.policy);
      ctx.metrics.decisionSeconds.observe({ protocol: "ssh" }, (performance.now() - t0) / 1000);
      const shown = forAudit(command);
      const rec = newRecord({ kind: "ssh-exec", command: shown });
      recording?.marker(`exec: ${shown}`);
      void track(() =>
        runChannel(channel, state, rec, decision, (up) =>
          openExec(up, analysis.ok ? renderCommand(analysis) : info.command, state),
        ),
      );
    });

    session.on("shell", (accept) => {
      const channel = accept();
      if (!channel) return;
      const rec = newRecord({ kind: "ssh-shell" });
      recording?.marker(state.pty ? "shell" : "shell (no terminal)");
      void track(() =>
        runChannel(channel, state, rec, evaluate({ kind: "ssh-shell" }), (c) => openShell(c, state)),
      );
    });

    session.on("subsystem", (accept, reject, info) => {
      if (info.name !== "sftp") {
        const rec = newRecord({ kind: "tcp", destination: `subsystem:${info.name}` });
        decide(rec, {
          action: "deny",
          policy: connection.policy,
          reason: `subsystem ${info.name} is not supported`,
        });
        audit(rec);
        reject?.();
        return;
      }
      const rec = newRecord({ kind: "ssh-sftp" });
      const decision = evaluate({ kind: "ssh-sftp" });
      if (decision.action === "deny") {
        // An SFTP client reads the channel as protocol: refuse the request itself.
        decide(rec, decision);
        rec.upstream = { error: "refused" };
        audit(rec);
        recording?.marker(`sftp refused: ${decision.reason}`);
        reject?.();
        return;
      }
      const channel = accept();
      if (!channel) return;
      recording?.marker("sftp");
      void track(async () => {
        const up = await authorize(
          rec,
          decision,
          () => {
            audit(rec);
            channel.close();
          },
          channel,
        );
        if (!up) return;
        let upCh: ClientChannel;
        try {
          upCh = await openSubsystem(up.client, "sftp");
        } catch {
          rec.upstream = { error: "channel_refused" };
          audit(rec);
          channel.close();
          return;
        }
        // SFTP is a binary protocol: bytes are relayed as they are, neither masked nor recorded.
        upCh.pipe(channel).pipe(upCh);
        const exit = await new Promise<Exit | undefined>((resolve) => {
          upCh.once("close", () => resolve(exits.get(upCh)));
          channel.once("close", () => {
            // pipe() stops reading from upCh once the agent's side closed: drain it so it can close.
            upCh.unpipe();
            upCh.resume();
            upCh.close();
            rec.upstream ??= { status: "closed" }; // how SFTP clients end a session
            resolve(exits.get(upCh));
          });
        });
        complete(channel, rec, exit);
      });
    });
  });

  // --- forwarding -------------------------------------------------------------------------

  const relay = (a: ServerChannel, b: ClientChannel, rec: OpRecord) => {
    a.pipe(b).pipe(a);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      audit(rec);
      a.destroy();
      b.destroy();
    };
    a.once("close", finish);
    b.once("close", finish);
  };

  agent.on("tcpip", (accept, reject, info) => {
    const target = `${info.destIP}:${info.destPort}`;
    const rec = newRecord({ kind: "ssh-forward", target });
    void track(async () => {
      const up = await authorize(rec, evaluate({ kind: "ssh-forward", target }), () => {
        audit(rec);
        reject();
      });
      if (!up) return;
      up.client.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, upCh) => {
        if (err) {
          rec.upstream = { error: "forward_refused" };
          audit(rec);
          return reject();
        }
        recording?.marker(`forward ${target}`);
        relay(accept(), upCh, rec);
      });
    });
  });

  const remoteForwards = new Set<string>();
  let forwardingInbound = false;
  agent.on("request", (accept, reject, kind, info) => {
    if (kind !== "tcpip-forward" && kind !== "cancel-tcpip-forward") {
      const rec = newRecord({ kind: "ssh-forward", target: `${kind}` });
      decide(rec, { action: "deny", policy: connection.policy, reason: `${kind} is not supported` });
      audit(rec);
      return reject?.();
    }
    const bind = info as { bindAddr: string; bindPort: number };
    const target = `remote:${bind.bindAddr}:${bind.bindPort}`;
    if (kind === "cancel-tcpip-forward") {
      if (!remoteForwards.has(target) || !upstream) return reject?.();
      remoteForwards.delete(target);
      void upstream.then((up) =>
        up.client.unforwardIn(bind.bindAddr, bind.bindPort, (e) => (e ? reject?.() : accept?.())),
      );
      return;
    }
    const rec = newRecord({ kind: "ssh-forward", target });
    void track(async () => {
      const up = await authorize(rec, evaluate({ kind: "ssh-forward", target }), () => {
        audit(rec);
        reject?.();
      });
      if (!up) return;
      if (!forwardingInbound) {
        forwardingInbound = true;
        up.client.on("tcp connection", (details, acceptUp, rejectUp) => {
          agent.forwardOut(
            details.destIP,
            details.destPort,
            details.srcIP,
            details.srcPort,
            (err, agentCh) => {
              if (err) return rejectUp();
              const conn = newRecord({
                kind: "ssh-forward",
                target: `remote:${details.destIP}:${details.destPort}`,
              });
              decide(conn, {
                action: "allow",
                policy: connection.policy,
                reason: `inbound connection on ${target}`,
              });
              relay(agentCh, acceptUp(), conn);
            },
          );
        });
      }
      up.client.forwardIn(bind.bindAddr, bind.bindPort, (err, port) => {
        if (err) {
          rec.upstream = { error: "forward_refused" };
          audit(rec);
          return reject?.();
        }
        remoteForwards.add(target);
        rec.upstream = { status: port };
        audit(rec);
        recording?.marker(`remote forward ${target}`);
        (accept as ((port?: number) => void) | undefined)?.(port);
      });
    });
  });

  // --- teardown ---------------------------------------------------------------------------

  agent.on("error", (err: Error) => log.debug({ err: err.message }, "ssh agent connection error"));
  agent.on("close", () => {
    if (closed) return;
    closed = true;
    for (const a of aborts) a.abort();
    void upstream?.then(
      (up) => up.client.end(),
      () => undefined,
    );
    if (ready) ctx.metrics.sessions.dec({ connection: name, protocol: "ssh" });
    else if (tokenMissing && !authRefused)
      auditAuthRefusal(
        "this connection requires an end-user identity token as the SSH password",
        "identity_required",
      );
    void recording?.end();
    log.debug({ durationMs: Math.round(performance.now() - started) }, "ssh session closed");
  });

  return {
    id,
    close() {
      agent.end();
    },
  };
}
