// The SSH guard against a real OpenSSH server (test/harness/sshd.ts) that trusts only the test
// user CA: allowed exec, every tricky form of denied exec (and proof that it never ran), chains,
// wrapped commands, approvals through the gate interface, port forwarding, SFTP, host-key
// verification, upstream private keys, masking, identity tokens as the SSH password.
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApprovalGate, ApprovalInput } from "../../sidecar/src/protocols/ssh/index.ts";
import { type SshdServer, startSshd } from "../harness/sshd.ts";
import {
  agentClient,
  exec,
  execOnce,
  KNOWN_HOSTS,
  SSH_OPTS,
  type SshPolicyOptions,
  type SshSidecar,
  sshPolicy,
  startSshSidecar,
  waitFor,
} from "./support.ts";

let sshd: SshdServer;
const sidecars: SshSidecar[] = [];

beforeAll(async () => {
  sshd = await startSshd();
});

afterAll(async () => {
  for (const s of sidecars) await s.close();
  await sshd?.stop();
});

async function sidecar(
  opts: SshPolicyOptions = {},
  extra: Partial<Parameters<typeof startSshSidecar>[0]> = {},
) {
  const s = await startSshSidecar({ sshd, policies: [sshPolicy(sshd, opts)], ...extra });
  sidecars.push(s);
  return s;
}

const RULES: SshPolicyOptions["rules"] = [
  { name: "no-rm", action: "deny", match: { ssh: { commands: ["rm *", "rm"] } } },
  {
    name: "basic",
    action: "allow",
    match: {
      ssh: { commands: ["echo *", "id", "uname *", "cat /etc/hostname", "touch /tmp/airlock-*", "false"] },
    },
  },
];

describe("exec", () => {
  let s: SshSidecar;
  beforeAll(async () => {
    s = await sidecar({ rules: RULES });
  });

  it("runs an allowed command upstream, as the certificate's user, and relays output and exit status", async () => {
    const r = await execOnce(s.port, "id");
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toContain(`(${sshd.user})`);
    const f = await execOnce(s.port, "false");
    expect(f.code).toBe(1);
    const event = s.audit.find((e) => e.operation.kind === "ssh-exec" && e.operation.command === "id");
    expect(event).toMatchObject({
      protocol: "ssh",
      connection: "box",
      decision: { action: "allow", rule: "basic", policy: "agents/ssh-test" },
      upstream: { status: 0 },
      identity: { serviceAccount: "system:serviceaccount:agents:agent", pod: "agent-0" },
    });
    expect(event?.session).toMatch(/^[0-9a-f-]{36}$/);
    // sshd accepted a certificate whose key id names pod, user and session.
    expect(sshd.logs()).toContain(
      `ID "airlock:pod=agents/agent-0,user=system:serviceaccount:agents:agent,session=${event?.session}"`,
    );
  });

  it("relays stdin and quoting exactly as judged", async () => {
    const client = await agentClient(s.port);
    try {
      const r = await exec(client, `echo 'a  b' "c\\"d" it\\'s`);
      expect(r).toMatchObject({ code: 0, stdout: `a  b c"d it's\n` });
      const chained = await exec(client, "echo one && echo two; echo three");
      expect(chained).toMatchObject({ code: 0, stdout: "one\ntwo\nthree\n" });
    } finally {
      client.end();
    }
  });

  it("works with the OpenSSH client as the agent", async () => {
    const { execFile } = await import("node:child_process");
    const run = (cmd: string) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          "ssh",
          [...SSH_OPTS, "-p", String(s.port), "agent@127.0.0.1", cmd],
          { timeout: 20_000 },
          (err, stdout, stderr) =>
            resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }),
        );
      });
    expect(await run("echo via openssh")).toMatchObject({ code: 0, stdout: "via openssh\n" });
    const denied = await run("id; whoami");
    expect(denied.code).toBe(126);
    expect(denied.stderr).toMatch(/airlock: denied/);
    expect(denied.stdout).toBe("");
  });

  // Not covered by the `touch /tmp/airlock-*` rule: a naive glob `echo *` over the raw line would
  // have let every chained form below through.
  const MARK = "/tmp/pwned-by-agent";
  it.each([
    ["semicolon", `echo hi; touch ${MARK}`, /denied/],
    ["&&", `echo hi && touch ${MARK}`, /denied/],
    ["||", `false || touch ${MARK}`, /denied/],
    ["pipe", `echo hi | tee ${MARK}`, /denied/],
    ["$(...)", `echo $(touch ${MARK})`, /\$ expansion/],
    ["backticks", `echo \`touch ${MARK}\``, /command substitution/],
    ["$VAR", "echo $HOME", /\$ expansion/],
    ["sudo (plain touch is allowed)", "sudo touch /tmp/airlock-sudo", /no rule allows/],
    ["bash -c", `bash -c 'touch ${MARK}'`, /denied/],
    ["sh -c with metacharacters", `sh -c "echo hi; touch ${MARK}"`, /denied/],
    ["newline", `echo hi\ntouch ${MARK}`, /newline/],
    ["redirection", `echo pwned > ${MARK}`, /redirection/],
    ["background", `touch ${MARK} &`, /background/],
    ["subshell", `(touch ${MARK})`, /subshell/],
    ["glob", "cat /etc/*", /pathname expansion/],
    ["env assignment", `LD_PRELOAD=/x.so touch ${MARK}`, /environment assignment/],
    ["tilde", "cat ~/.ssh/authorized_keys", /tilde/],
    [
      "wrapped rm through sudo",
      "sudo -u root rm -rf /tmp/x",
      /rule no-rm.*wrapped command "rm -rf \/tmp\/x"/,
    ],
    ["rm by path", "/bin/rm -rf /tmp/x", /rule no-rm/],
  ])(
    "refuses %s with exit 126 and a message naming the reason, and it never runs",
    async (_name, command, why) => {
      await rm(MARK, { force: true });
      const r = await execOnce(s.port, command);
      expect(r.code).toBe(126);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/^airlock: denied/);
      expect(r.stderr).toMatch(why);
      expect(existsSync(MARK)).toBe(false);
      const event = s.audit.findLast((e) => e.operation.kind === "ssh-exec");
      expect(event?.decision.action).toBe("deny");
      expect(event?.upstream).toBeUndefined();
    },
  );

  it("names the deny rule, and keeps the session usable after a refusal", async () => {
    const client = await agentClient(s.port);
    try {
      const denied = await exec(client, "rm -rf /tmp/nothing");
      expect(denied.code).toBe(126);
      expect(denied.stderr).toBe("airlock: denied by rule no-rm\n");
      const unknown = await exec(client, "whoami");
      expect(unknown.code).toBe(126);
      expect(unknown.stderr).toMatch(/no rule allows this operation \(default deny\)/);
      const ok = await exec(client, "echo still here");
      expect(ok).toMatchObject({ code: 0, stdout: "still here\n" });
    } finally {
      client.end();
    }
  });

  it("runs several commands over one upstream connection, each audited once", async () => {
    const before = s.audit.length;
    const client = await agentClient(s.port);
    try {
      const results = await Promise.all([
        exec(client, "echo 1"),
        exec(client, "echo 2"),
        exec(client, "echo 3"),
      ]);
      expect(results.map((r) => r.stdout).sort()).toEqual(["1\n", "2\n", "3\n"]);
    } finally {
      client.end();
    }
    const events = s.audit.slice(before);
    expect(events).toHaveLength(3);
    expect(new Set(events.map((e) => e.session)).size).toBe(1);
  });
});

describe("approvals", () => {
  const RULES_APPROVAL: SshPolicyOptions["rules"] = [
    {
      name: "restart",
      action: "requireApproval",
      match: { ssh: { commands: ["echo restart *"] } },
      approval: { approvers: { groups: ["oncall"] } },
    },
    { name: "basic", action: "allow", match: { ssh: { commands: ["echo *"] } } },
  ];

  it("without an approval service the command is refused with a clear message", async () => {
    const s = await sidecar({ rules: RULES_APPROVAL });
    const r = await execOnce(s.port, "echo restart web");
    expect(r.code).toBe(126);
    expect(r.stderr).toMatch(/approval required but no approval service is configured/);
    expect(s.audit.at(-1)).toMatchObject({
      decision: { action: "requireApproval", rule: "restart" },
      upstream: { error: "approval_unavailable" },
    });
  });

  it("waits on the gate: approved runs, denied is refused naming the request", async () => {
    const asked: ApprovalInput[] = [];
    let verdict: "approve" | "deny" = "approve";
    const gate: ApprovalGate = {
      async request(input) {
        asked.push(input);
        input.onWaiting?.({
          request: "areq-1",
          approveHint: "kubectl airlock approve areq-1 -n agents",
          expiresAt: "soon",
        });
        await new Promise((r) => setTimeout(r, 100));
        return verdict === "approve"
          ? { approved: true, request: "areq-1", approvers: ["dana"] }
          : { approved: false, request: "areq-2", status: "denied", message: "not during business hours" };
      },
    };
    const s = await sidecar({ rules: RULES_APPROVAL }, { approvals: gate });
    const ok = await execOnce(s.port, "echo restart 'web 1'");
    expect(ok).toMatchObject({ code: 0, stdout: "restart web 1\n" });
    // The agent was told at once that the command waits, and what an approver runs.
    expect(ok.stderr).toMatch(
      /^airlock: waiting for approval: kubectl airlock approve areq-1 -n agents \(access request areq-1/,
    );
    expect(asked[0]).toMatchObject({
      protocol: "ssh",
      connection: "box",
      operation: { kind: "ssh-exec", command: "echo restart web 1" },
      decision: { action: "requireApproval", rule: "restart" },
      subject: { serviceAccount: "system:serviceaccount:agents:agent" },
    });
    expect(s.audit.at(-1)).toMatchObject({
      decision: { action: "requireApproval", rule: "restart" },
      approval: { request: "areq-1", approvers: ["dana"] },
      upstream: { status: 0 },
    });

    verdict = "deny";
    const denied = await execOnce(s.port, "echo restart web");
    expect(denied.code).toBe(126);
    expect(denied.stdout).toBe("");
    expect(denied.stderr).toMatch(
      /approval denied for rule restart \(request areq-2\): not during business hours/,
    );
    expect(s.audit.at(-1)).toMatchObject({ upstream: { error: "approval_denied" } });
    // Commands that need no approval never reach the gate.
    const plain = await execOnce(s.port, "echo hello");
    expect(plain.code).toBe(0);
    expect(asked).toHaveLength(2);
  });

  it("aborts the approval wait when the agent goes away", async () => {
    let signal: AbortSignal | undefined;
    const gate: ApprovalGate = {
      request: (input) =>
        new Promise((resolve) => {
          signal = input.signal;
          input.signal.addEventListener("abort", () =>
            resolve({ approved: false, request: "areq-3", status: "pending" }),
          );
        }),
    };
    const s = await sidecar({ rules: RULES_APPROVAL }, { approvals: gate });
    const client = await agentClient(s.port);
    void exec(client, "echo restart db").catch(() => undefined);
    await waitFor(() => signal, 5_000, "the gate to be asked");
    client.end();
    await waitFor(() => signal?.aborted, 5_000, "the abort");
  });
});

describe("port forwarding, agent forwarding and SFTP", () => {
  let echo: Server;
  let echoPort: number;
  beforeAll(async () => {
    echo = createServer((sock) => sock.pipe(sock));
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
    echoPort = (echo.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => echo.close(() => r())));

  const forwardOut = (client: Awaited<ReturnType<typeof agentClient>>) =>
    new Promise<string>((resolve, reject) => {
      client.forwardOut("127.0.0.1", 5555, "127.0.0.1", echoPort, (err, ch) => {
        if (err) return reject(err);
        ch.on("data", (d: Buffer) => {
          resolve(d.toString());
          ch.close();
        });
        ch.write("ping");
      });
    });

  it("refuses local and remote forwarding unless a rule allows it", async () => {
    const s = await sidecar({ rules: RULES });
    const client = await agentClient(s.port);
    try {
      await expect(forwardOut(client)).rejects.toThrow();
      await expect(
        new Promise((resolve, reject) =>
          client.forwardIn("127.0.0.1", 0, (err, port) => (err ? reject(err) : resolve(port))),
        ),
      ).rejects.toThrow();
      // The session is still fine.
      expect((await exec(client, "echo ok")).code).toBe(0);
    } finally {
      client.end();
    }
    const forwards = s.audit.filter((e) => e.operation.kind === "ssh-forward");
    expect(forwards.map((e) => [e.operation, e.decision.action])).toEqual([
      [{ kind: "ssh-forward", target: `127.0.0.1:${echoPort}` }, "deny"],
      [{ kind: "ssh-forward", target: "remote:127.0.0.1:0" }, "deny"],
    ]);
    // The session's certificate did not permit forwarding (nor a pty: no shell rule) either.
    const connected =
      s
        .logs()
        .split("\n")
        .find((l) => l.includes("ssh upstream connected")) ?? "{}";
    expect(JSON.parse(connected).certificate.extensions).toEqual([]);
  });

  it("forwards when a rule allows portForwarding", async () => {
    const s = await sidecar({
      rules: [
        ...(RULES ?? []),
        { name: "tunnels", action: "allow", match: { ssh: { portForwarding: true } } },
      ],
    });
    const client = await agentClient(s.port);
    try {
      expect(await forwardOut(client)).toBe("ping");
    } finally {
      client.end();
    }
    const connected =
      s
        .logs()
        .split("\n")
        .find((l) => l.includes("ssh upstream connected")) ?? "{}";
    expect(JSON.parse(connected).certificate.extensions).toEqual(["permit-port-forwarding"]);
    await waitFor(
      () => s.audit.find((e) => e.operation.kind === "ssh-forward"),
      5_000,
      "the forward's audit event",
    );
    expect(s.audit.find((e) => e.operation.kind === "ssh-forward")).toMatchObject({
      decision: { action: "allow", rule: "tunnels" },
    });
  });

  it("refuses agent forwarding", async () => {
    const s = await sidecar({ rules: RULES });
    const client = await agentClient(s.port);
    try {
      await new Promise<void>((resolve) => {
        client.exec("echo hi", (err, ch) => {
          if (err) return resolve();
          // Ask for agent forwarding on the channel by hand (ssh2 only sends it with a local agent).
          (
            ch as unknown as {
              _client: { _protocol: { openssh_agentForward(id: number, wantReply: boolean): void } };
              outgoing: { id: number };
            }
          )._client._protocol.openssh_agentForward(
            (ch as unknown as { outgoing: { id: number } }).outgoing.id,
            true,
          );
          ch.on("close", () => resolve());
          ch.resume();
        });
      });
    } finally {
      client.end();
    }
    await waitFor(() => s.audit.find((e) => e.operation.kind === "ssh-forward"), 5_000, "the audit event");
    expect(s.audit.find((e) => e.operation.kind === "ssh-forward")).toMatchObject({
      operation: { target: "agent" },
      decision: { action: "deny" },
    });
  });

  it("SFTP per rule", async () => {
    const sftpList = (port: number) =>
      agentClient(port).then(
        (client) =>
          new Promise<string[]>((resolve, reject) => {
            client.sftp((err, sftp) => {
              if (err) {
                client.end();
                return reject(err);
              }
              sftp.readdir("/", (e, list) => {
                client.end();
                if (e) reject(e);
                else resolve(list.map((f) => f.filename));
              });
            });
          }),
      );
    const denied = await sidecar({ rules: RULES });
    await expect(sftpList(denied.port)).rejects.toThrow();
    expect(denied.audit.find((e) => e.operation.kind === "ssh-sftp")?.decision.action).toBe("deny");

    const allowed = await sidecar({
      rules: [...(RULES ?? []), { name: "files", action: "allow", match: { ssh: { sftp: true } } }],
    });
    expect(await sftpList(allowed.port)).toContain("tmp");
    await waitFor(() => allowed.audit.find((e) => e.operation.kind === "ssh-sftp"), 5_000, "sftp audit");
    expect(allowed.audit.find((e) => e.operation.kind === "ssh-sftp")?.decision).toMatchObject({
      action: "allow",
      rule: "files",
    });
  });
});

describe("upstream host keys and credentials", () => {
  it("refuses an upstream whose host key does not match known_hosts", async () => {
    const s = await sidecar({ rules: RULES, knownHostsKey: "wrong" });
    // A valid key, but not this server's.
    await s.writeSecret(KNOWN_HOSTS, "wrong", `[127.0.0.1]:${sshd.port} ${sshd.caPublicKey}\n`);
    const r = await execOnce(s.port, "id");
    expect(r.code).toBe(255);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/upstream unavailable \(host_key_mismatch\)/);
    expect(s.audit.at(-1)).toMatchObject({
      decision: { action: "allow" },
      upstream: { error: "host_key_mismatch" },
    });
    expect(s.logs()).toMatch(/host_key_mismatch/);
  });

  it("refuses an upstream known_hosts does not list, and a revoked key", async () => {
    const s = await sidecar({ rules: RULES, knownHostsKey: "other" });
    await s.writeSecret(KNOWN_HOSTS, "other", `[example.com]:22 ${sshd.hostPublicKey}\n`);
    expect((await execOnce(s.port, "id")).stderr).toMatch(/host_key_unknown/);
    await s.writeSecret(
      KNOWN_HOSTS,
      "other",
      `${sshd.knownHosts}\n@revoked [127.0.0.1]:${sshd.port} ${sshd.hostPublicKey}\n`,
    );
    expect((await execOnce(s.port, "id")).stderr).toMatch(/host_key_revoked/);
  });

  it("authenticates with a plain private key from the Secret", async () => {
    const s = await sidecar({ rules: RULES, auth: "key" });
    const r = await execOnce(s.port, "id");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(sshd.user);
  });

  it("reports a certificate the upstream refuses (principal not allowed)", async () => {
    const s = await sidecar({ rules: RULES, principals: ["someone-else"] });
    const r = await execOnce(s.port, "id");
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/auth_failed/);
  });
});

describe("masking", () => {
  it("masks secrets in command output before the agent sees them", async () => {
    const s = await sidecar({
      rules: RULES,
      masking: [{ name: "keys", detectors: ["awsAccessKey"], strategy: "redact" }],
    });
    const r = await execOnce(s.port, "echo key=AKIAIOSFODNN7EXAMPLE done");
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("AKIAIOSFODNN7EXAMPLE");
    expect(r.stdout).toMatch(/^key=.+ done\n$/);
    expect(s.audit.at(-1)?.masked).toEqual({ awsAccessKey: 1 });
  });
});
