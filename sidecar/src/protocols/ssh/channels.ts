// Session channels of one agent SSH connection: pty/env/window/signal bookkeeping, and the
// operations a session channel carries — exec (command analysis), shell, the SFTP subsystem —
// each judged on its own and, when allowed, bridged to a channel on the session's upstream.
// Requests the sidecar never bridges (X11, agent forwarding, other subsystems) are refused here.
import type { ClientChannel, PseudoTtyInfo, ServerChannel, Session, Client as Ssh2Client } from "ssh2";
import { refusal } from "../../decisions/refusals.ts";
import { decideAgentForwarding, decideExec, decideX11 } from "../../decisions/ssh-exec.ts";
import type { Operation } from "../../operations/lifecycle.ts";
import type { Decision } from "../../policy/types.ts";
import { renderCommand } from "../../shell/command.ts";
import {
  authorize,
  beginOperation,
  EXIT_UPSTREAM,
  forAudit,
  onFindings,
  type SshCore,
  track,
} from "./core.ts";
import { createOutputPipe } from "./output.ts";
import { transferProtocol } from "./transfer.ts";
import type { Upstream } from "./upstream.ts";

/** Environment variables passed on to the upstream when the agent sets them; others are dropped. */
const FORWARDED_ENV = /^(LANG|LANGUAGE|LC_[A-Z_]+|TZ|COLORTERM)$/;

interface Exit {
  code?: number;
  signal?: string;
  dump?: boolean;
  desc?: string;
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

const lineEnd = (state: ChannelState) => (state.pty ? "\r\n" : "\n");

/** Refuses on an accepted channel: message on stderr, exit status, clean close. */
function refuse(
  core: SshCore,
  channel: ServerChannel,
  state: ChannelState,
  rec: Operation,
  message: string,
  status: number,
): void {
  const text = `airlock: ${message}${lineEnd(state)}`;
  const recording = core.recording();
  recording?.output(text);
  recording?.marker(`exit ${status}`);
  // As for HTTP refusals, `upstream` only says something when a step after the decision failed.
  // (end(): a refusal after an approval wait may come when the session already ended it.)
  rec.end();
  if (!channel.writable) return;
  channel.stderr.write(text);
  channel.exit(status);
  channel.end();
}

function responseMasker(core: SshCore) {
  const slot = core.masking().response;
  const masker = "masker" in slot ? slot.masker : undefined;
  return masker && masker.textDetectors.length > 0 ? masker : undefined;
}

/** Pipes an agent channel and an upstream channel until the upstream closes; masks and records output. */
function bridge(
  core: SshCore,
  channel: ServerChannel,
  up: ClientChannel,
  rec: Operation,
  raw: boolean,
): Promise<Exit | undefined> {
  const masker = raw ? undefined : responseMasker(core);
  const pipeTo = (write: (b: Buffer) => boolean) =>
    createOutputPipe({
      masker,
      idleMs: core.deps.idleFlushMs,
      onFindings: onFindings(rec),
      record: (text) => (raw ? undefined : core.recording()?.output(text)),
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
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      out.end();
      err.end();
      resolve(exits.get(up));
    };
    up.once("close", end);
    channel.once("close", () => {
      if (!rec.finished && !ended) rec.upstream = { error: "agent_disconnected" };
      up.resume(); // it may be paused for a drain that will not come
      up.close();
      end();
    });
  });
}

/** What the agent may still be sent on the channel now (ssh2 keeps it out of its type definitions). */
const windowLeft = (channel: ServerChannel): number =>
  (channel as unknown as { outgoing: { window: number } }).outgoing.window;

const UPSTREAM_CLOSED_NOTICE = Buffer.from(
  "airlock: the upstream closed the connection before the command finished\r\n",
);

/** Audits the operation (before the exit status reaches the agent), then passes the exit on. */
function complete(core: SshCore, channel: ServerChannel, rec: Operation, exit: Exit | undefined): void {
  if (rec.finished) return; // the session closed under it and ended it
  // No exit status and no signal: the upstream connection or channel went away mid-command.
  if (!rec.upstream)
    rec.upstream =
      exit?.code !== undefined
        ? { status: exit.code }
        : exit?.signal
          ? { status: exit.signal }
          : { error: "upstream_closed" };
  core
    .recording()
    ?.marker(exit?.code !== undefined ? `exit ${exit.code}` : `exit ${exit?.signal ?? "(none)"}`);
  rec.finish();
  if (!channel.writable) return;
  if (exit?.code !== undefined) channel.exit(exit.code);
  else if (exit?.signal) {
    try {
      channel.exit(exit.signal.replace(/^SIG/, ""), exit.dump, exit.desc);
    } catch {
      channel.exit(EXIT_UPSTREAM);
    }
  } else {
    // ssh2 (1.17) re-sends a stale stdout chunk and calls its callback again when stderr has to
    // wait for the channel window, which destroys the channel: the line goes only when it fits.
    if (windowLeft(channel) >= UPSTREAM_CLOSED_NOTICE.length) channel.stderr.write(UPSTREAM_CLOSED_NOTICE);
    channel.exit(EXIT_UPSTREAM);
  }
  channel.end();
}

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

/** Opens the upstream side of the channel; a refusal there ends the agent's channel with its reason. */
async function openUpstream(
  core: SshCore,
  channel: ServerChannel,
  state: ChannelState,
  rec: Operation,
  what: string,
  open: () => Promise<ClientChannel>,
): Promise<ClientChannel | undefined> {
  try {
    return await open();
  } catch (err) {
    rec.upstream = { error: "channel_refused" };
    refuse(
      core,
      channel,
      state,
      rec,
      `the upstream refused ${what}: ${err instanceof Error ? err.message : String(err)}`,
      EXIT_UPSTREAM,
    );
    return undefined;
  }
}

/** Runs an authorized session-channel operation end to end. */
async function runChannel(
  core: SshCore,
  channel: ServerChannel,
  state: ChannelState,
  rec: Operation,
  decision: Decision,
  open: (up: Upstream) => Promise<ClientChannel>,
  raw = false,
): Promise<void> {
  const up = await authorize(core, rec, decision, (m, s) => refuse(core, channel, state, rec, m, s), channel);
  if (!up) return;
  if (!channel.writable) {
    rec.end("agent_disconnected");
    return;
  }
  const upCh = await openUpstream(core, channel, state, rec, "the channel", () => open(up));
  if (!upCh) return;
  state.upstream = upCh;
  const exit = await bridge(core, channel, upCh, rec, raw);
  state.upstream = undefined;
  complete(core, channel, rec, exit);
}

/**
 * SFTP. A refusal is sent on stderr with exit status 1 (OpenSSH's sftp and scp print stderr; a
 * refused subsystem request would only say "subsystem request failed"); nothing is written to the
 * channel's stdout, which the client reads as protocol.
 */
function sftp(core: SshCore, accept: () => ServerChannel | undefined, state: ChannelState): void {
  const rec = beginOperation(core, { kind: "ssh-sftp" });
  const decision = core.evaluate({ kind: "ssh-sftp" });
  const recording = core.recording();
  const channel = accept();
  if (!channel) return;
  recording?.marker(decision.action === "deny" ? `sftp refused: ${decision.reason}` : "sftp");
  void track(core, async () => {
    const up = await authorize(
      core,
      rec,
      decision,
      (m, status) => refuse(core, channel, state, rec, m, status),
      channel,
    );
    if (!up) return;
    const upCh = await openUpstream(core, channel, state, rec, "the sftp subsystem", () =>
      openSubsystem(up.client, "sftp"),
    );
    if (!upCh) return;
    // SFTP is a binary protocol: bytes are relayed as they are, neither masked nor recorded. The
    // agent's channel is not ended with the upstream's (ssh2 would close it at once): complete()
    // sends the exit status first.
    upCh.pipe(channel, { end: false });
    upCh.stderr.on("data", (d: Buffer) => channel.writable && channel.stderr.write(d));
    channel.pipe(upCh);
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
    complete(core, channel, rec, exit);
  });
}

/** Serves one accepted session channel. */
export function serveSessionChannel(core: SshCore, session: Session): void {
  const { ctx, connection } = core;
  const state: ChannelState = { env: {} };
  session.on("pty", (accept, reject, info: PseudoTtyInfo) => {
    if (state.pty) return reject?.();
    state.pty = info;
    core.recording()?.setInitialSize(info.cols, info.rows);
    accept?.();
  });
  session.on("env", (accept, _reject, info) => {
    if (FORWARDED_ENV.test(info.key)) state.env[info.key] = info.val;
    accept?.(); // others are dropped silently, as sshd does without AcceptEnv
  });
  session.on("window-change", (accept, _reject, info) => {
    state.upstream?.setWindow(info.rows, info.cols, info.height, info.width);
    core.recording()?.resize(info.cols, info.rows);
    accept?.();
  });
  session.on("signal", (accept, _reject, info) => {
    state.upstream?.signal(info.name);
    accept?.();
  });
  session.on("x11", (_accept, reject) => {
    beginOperation(core, { kind: "ssh-forward", target: "x11" })
      .decide(decideX11(connection.policy))
      .finish();
    reject?.();
  });
  session.on("auth-agent", (_accept, reject) => {
    beginOperation(core, { kind: "ssh-forward", target: "agent" })
      .decide(decideAgentForwarding((op) => core.evaluate(op)))
      .finish();
    reject?.();
  });

  /** Session channels take notices on stderr (a refused `-R` has no reply text of its own). */
  const listen = (channel: ServerChannel) => {
    const write = (line: string) => {
      if (channel.writable) channel.stderr.write(`${line}${lineEnd(state)}`);
    };
    const detach = core.attachStderr(write);
    channel.once("close", detach);
  };

  session.on("exec", (accept, _reject, info) => {
    const channel = accept();
    if (!channel) return;
    listen(channel);
    const t0 = performance.now();
    const { decision, analysis, command } = decideExec(
      (op) => core.evaluate(op),
      info.command,
      connection.policy,
    );
    ctx.metrics.decisionSeconds.observe({ protocol: "ssh" }, (performance.now() - t0) / 1000);
    const shown = forAudit(core, command);
    const rec = beginOperation(core, { kind: "ssh-exec", command: shown });
    core.recording()?.marker(`exec: ${shown}`);
    // A file-transfer protocol (scp -O, rsync) is relayed byte for byte, never masked: with masking
    // rules on, that is unmasked file transfer, which only a rule allowing sftp grants.
    const transfer = transferProtocol(analysis);
    const masked = responseMasker(core) !== undefined;
    const effective =
      transfer &&
      masked &&
      decision.action !== "deny" &&
      core.evaluate({ kind: "ssh-sftp" }).action !== "allow"
        ? refusal("sshTransferMasked", connection.policy, transfer)
        : decision;
    void track(core, () =>
      runChannel(
        core,
        channel,
        state,
        rec,
        effective,
        (up) => openExec(up, analysis.ok ? renderCommand(analysis) : info.command, state),
        transfer !== undefined,
      ),
    );
  });

  session.on("shell", (accept) => {
    const channel = accept();
    if (!channel) return;
    listen(channel);
    const rec = beginOperation(core, { kind: "ssh-shell" });
    core.recording()?.marker(state.pty ? "shell" : "shell (no terminal)");
    void track(core, () =>
      runChannel(core, channel, state, rec, core.evaluate({ kind: "ssh-shell" }), (c) => openShell(c, state)),
    );
  });

  session.on("subsystem", (accept, reject, info) => {
    if (info.name !== "sftp") {
      beginOperation(core, { kind: "tcp", destination: `subsystem:${info.name}` })
        .decide(refusal("sshUnsupported", connection.policy, `subsystem ${info.name}`))
        .finish();
      reject?.();
      return;
    }
    sftp(core, accept, state);
  });
}
