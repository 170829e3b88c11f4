// Port forwarding of one agent SSH connection: local forwards (`direct-tcpip`, `ssh -L`) and
// remote forwards (`tcpip-forward`, `ssh -R`), each an `ssh-forward` operation judged by the
// policy; inbound connections on an allowed remote forward are relayed under that decision.
// Other global requests are refused.
import type { ClientChannel, Connection, ServerChannel } from "ssh2";
import { refusal } from "../../decisions/refusals.ts";
import { decideInboundForward } from "../../decisions/ssh-exec.ts";
import type { Operation } from "../../operations/lifecycle.ts";
import { authorize, beginOperation, type SshCore, track } from "./core.ts";
import { OPEN_FAILURE, openFailureReasons } from "./open-failure.ts";

function relay(a: ServerChannel, b: ClientChannel, rec: Operation): void {
  a.pipe(b).pipe(a);
  const end = () => {
    rec.end();
    a.destroy();
    b.destroy();
  };
  a.once("close", end);
  b.once("close", end);
}

/** Serves the agent's forwarding requests for the session. */
export function serveForwarding(core: SshCore, agent: Connection): void {
  const { connection } = core;
  const rejectWith = openFailureReasons(agent);

  // A refused `-L` says why in the open-failure description: OpenSSH prints
  // "channel N: open failed: administratively prohibited: airlock: denied ...".
  agent.on("tcpip", (accept, reject, info) => {
    const target = `${info.destIP}:${info.destPort}`;
    const rec = beginOperation(core, { kind: "ssh-forward", target });
    void track(core, async () => {
      const up = await authorize(core, rec, core.evaluate({ kind: "ssh-forward", target }), (message) => {
        rec.end();
        rejectWith(reject, OPEN_FAILURE.administrativelyProhibited, `airlock: ${message}`);
      });
      if (!up) return;
      up.client.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, upCh) => {
        if (err) {
          rec.upstream = { error: "forward_refused" };
          rec.end();
          return rejectWith(
            reject,
            OPEN_FAILURE.connectFailed,
            `airlock: the upstream refused: ${err.message}`,
          );
        }
        core.recording()?.marker(`forward ${target}`);
        relay(accept(), upCh, rec);
      });
    });
  });

  const remoteForwards = new Set<string>();
  let forwardingInbound = false;
  agent.on("request", (accept, reject, kind, info) => {
    if (kind !== "tcpip-forward" && kind !== "cancel-tcpip-forward") {
      beginOperation(core, { kind: "ssh-forward", target: `${kind}` })
        .decide(refusal("sshUnsupported", connection.policy, kind))
        .finish();
      return reject?.();
    }
    const bind = info as { bindAddr: string; bindPort: number };
    const target = `remote:${bind.bindAddr}:${bind.bindPort}`;
    if (kind === "cancel-tcpip-forward") {
      const opened = core.openedUpstream();
      if (!remoteForwards.has(target) || !opened) return reject?.();
      remoteForwards.delete(target);
      void opened.then((up) =>
        up.client.unforwardIn(bind.bindAddr, bind.bindPort, (e) => (e ? reject?.() : accept?.())),
      );
      return;
    }
    const rec = beginOperation(core, { kind: "ssh-forward", target });
    void track(core, async () => {
      // SSH_MSG_REQUEST_FAILURE carries no text: the reason goes to the stderr of the agent's
      // session channels (the `ssh -R host cmd` the agent is watching), and to the audit event.
      const up = await authorize(core, rec, core.evaluate({ kind: "ssh-forward", target }), (message) => {
        rec.end();
        core.notice(`remote forward ${bind.bindAddr}:${bind.bindPort}: ${message}`);
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
              const conn = beginOperation(core, {
                kind: "ssh-forward",
                target: `remote:${details.destIP}:${details.destPort}`,
              });
              conn.decide(decideInboundForward(connection.policy, target));
              relay(agentCh, acceptUp(), conn);
            },
          );
        });
      }
      up.client.forwardIn(bind.bindAddr, bind.bindPort, (err, port) => {
        if (err) {
          rec.upstream = { error: "forward_refused" };
          rec.end();
          core.notice(
            `remote forward ${bind.bindAddr}:${bind.bindPort}: the upstream refused: ${err.message}`,
          );
          return reject?.();
        }
        remoteForwards.add(target);
        rec.upstream = { status: port };
        rec.end();
        core.recording()?.marker(`remote forward ${target}`);
        (accept as ((port?: number) => void) | undefined)?.(port);
      });
    });
  });
}
