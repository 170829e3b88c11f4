// One agent SSH connection: authentication (workload trust, or an OIDC token as the password),
// the upstream SSH connection opened for this session with a fresh certificate, and teardown.
// Channel requests are judged one by one in channels.ts (exec, shell, SFTP) and forwarding.ts
// (port forwarding); every operation is one operation of the shared lifecycle, ended in exactly
// one audit event emitted before its exit status is released to the agent. Refusals: README.md.
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { AuthContext, Connection } from "ssh2";
import type { AuditIdentity } from "../../audit/events.ts";
import { refusal } from "../../decisions/refusals.ts";
import { isIdentityError } from "../../identity/index.ts";
import { OperationLog } from "../../operations/lifecycle.ts";
import { connectionMasking } from "../../operations/masking.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Decision, Operation, Subject } from "../../policy/types.ts";
import type { TerminalRecording } from "../../recording/index.ts";
import { subjectFor } from "../../runtime/context.ts";
import { serveSessionChannel } from "./channels.ts";
import type { SessionDeps, SshCore } from "./core.ts";
import { serveForwarding } from "./forwarding.ts";
import { connectUpstream, type Upstream, UpstreamError } from "./upstream.ts";

export { EXIT_DENIED, EXIT_UPSTREAM, type SessionDeps } from "./core.ts";

/** Notices kept for a session channel that is not open yet (refused `-R` before the command). */
const MAX_PENDING_NOTICES = 10;
const JWT_LIKE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export interface SshSession {
  readonly id: string;
  close(): void;
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
  let ready = false;
  let closed = false;
  let upstream: Promise<Upstream> | undefined;
  let recording: TerminalRecording | undefined;
  const aborts = new Set<AbortController>();
  const started = performance.now();
  const ops = new OperationLog(ctx, {
    session: id,
    connection: name,
    protocol: "ssh",
    identity: workloadIdentity,
    failClosed: () => agent.end(),
  });

  const evaluate = (op: Operation): Decision => ctx.policies.current().evaluate(name, subject, op);

  // --- authentication ---------------------------------------------------------------------

  let authRefused = false;
  let tokenMissing = false;
  const auditAuthRefusal = (reason: Decision, code: string) => {
    authRefused = true;
    const rec = ops.begin({
      kind: "tcp",
      destination: `${connection.spec.target.host}:${connection.spec.target.port}`,
    });
    rec.decide(reason);
    rec.upstream = { error: code };
    rec.finish();
    log.info({ code }, `ssh authentication refused: ${reason.reason}`);
  };
  const refuseAuth = (auth: AuthContext, reason: Decision, code: string) => {
    auditAuthRefusal(reason, code);
    auth.reject(["password"]);
  };
  agent.on("authentication", (auth: AuthContext) => {
    const current = ctx.policies.current().connections.get(name) ?? connection;
    const verifier = ctx.verifierFor(current);
    // A password that cannot be a token (clients such as paramiko need one to try at all) claims
    // no identity: where the policy does not require a token, it is ignored like `none`.
    const dummyPassword =
      auth.method === "password" && !current.requireUserToken && !JWT_LIKE.test(auth.password);
    if (auth.method === "password" && !dummyPassword && (verifier || JWT_LIKE.test(auth.password))) {
      if (!verifier) {
        // A token nobody can verify is refused rather than ignored (as for HTTP): the agent
        // believes it acts for someone, and the policy cannot say for whom.
        refuseAuth(
          auth,
          refusal(
            "identityRefused",
            connection.policy,
            "invalid_config: the policy has no identity.oidc issuer",
          ),
          "invalid_identity",
        );
        return;
      }
      verifier.verify(auth.password).then(
        (user) => {
          subject = subjectFor(ctx.workload, user);
          ops.identity = { ...workloadIdentity, user: user.user, groups: user.groups };
          auth.accept();
        },
        (err: unknown) => {
          if (!isIdentityError(err)) log.error({ err: String(err) }, "identity verification failed");
          refuseAuth(
            auth,
            refusal("identityRefused", connection.policy, isIdentityError(err) ? err.code : "internal_error"),
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
    const identity = ops.identity;
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
    const user = ops.identity.user ?? subject.serviceAccount;
    const up = await connectUpstream({
      connection,
      secrets: ctx.secrets,
      credentials: ctx.credentials,
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

  // --- channels and forwarding ----------------------------------------------------------

  const stderrWriters = new Set<(line: string) => void>();
  const pendingNotices: string[] = [];
  const core: SshCore = {
    deps,
    ctx,
    id,
    connection,
    log,
    ops,
    aborts,
    recording: () => recording,
    subject: () => subject,
    evaluate,
    masking: () => connectionMasking(connection, ctx.hashKey),
    upstream: getUpstream,
    openedUpstream: () => upstream,
    attachStderr(write) {
      stderrWriters.add(write);
      for (const line of pendingNotices.splice(0)) write(line);
      return () => stderrWriters.delete(write);
    },
    notice(text) {
      const line = `airlock: ${text}`;
      if (stderrWriters.size === 0) {
        if (pendingNotices.length < MAX_PENDING_NOTICES) pendingNotices.push(line);
        return;
      }
      for (const write of stderrWriters) write(line);
    },
  };
  agent.on("session", (acceptSession) => serveSessionChannel(core, acceptSession()));
  serveForwarding(core, agent);

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
        refusal("identityRequired", connection.policy, "as the SSH password"),
        "identity_required",
      );
    ops.close("agent_disconnected");
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
