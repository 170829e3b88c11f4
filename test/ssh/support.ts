// Test support for the SSH guard: a real SidecarContext (PolicyStore, file SecretStore, metrics,
// pino logger into a buffer so recordings and audit lines can be read back like pod logs), the
// guard on a loopback port, policies for a harness sshd, and an ssh2 client playing the agent.

import { Client, type ClientChannel, type PseudoTtyOptions } from "ssh2";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import type { CredentialSourcesOptions } from "../../sidecar/src/credentials/index.ts";
import type { OidcVerifier } from "../../sidecar/src/identity/index.ts";
import type { CompiledConnection } from "../../sidecar/src/policy/compile.ts";
import {
  type ApprovalGate,
  createSshGuard,
  type SshGuard,
  type SshGuardOptions,
} from "../../sidecar/src/protocols/ssh/index.ts";
import { createRecorder, type Recorder, recordingSettingsFrom } from "../../sidecar/src/recording/index.ts";
import type { SidecarContext } from "../../sidecar/src/runtime/context.ts";
import type { Metrics } from "../../sidecar/src/telemetry/metrics.ts";
import { testContext, WORKLOAD } from "../harness/context.ts";
import type { SshdServer } from "../harness/sshd.ts";

export { WORKLOAD };

type Spec = AgentAccessPolicy["spec"];
type SshConnection = Spec["connections"][number];

export interface SshPolicyOptions {
  rules?: Spec["rules"];
  masking?: Spec["masking"];
  identity?: Spec["identity"];
  audit?: Spec["audit"];
  /** Certificate (default) or the harness user's plain private key. */
  auth?: "certificate" | "key";
  validity?: string;
  principals?: string[];
  knownHostsKey?: string;
}

export const SECRET = "ssh-cred";
export const KNOWN_HOSTS = "ssh-known-hosts";

export function sshPolicy(sshd: SshdServer, opts: SshPolicyOptions = {}): AgentAccessPolicy {
  const credentials: NonNullable<SshConnection["credentials"]> = {
    secretRef: { name: SECRET },
    ssh:
      opts.auth === "key"
        ? { username: sshd.user, privateKeyKey: "id_ed25519" }
        : {
            username: sshd.user,
            certificate: {
              caKey: "ca",
              ...(opts.validity ? { validity: opts.validity } : {}),
              principals: opts.principals ?? [sshd.user],
            },
          },
  };
  return {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "ssh-test", namespace: "agents" },
    spec: {
      ...(opts.identity ? { identity: opts.identity } : {}),
      connections: [
        {
          name: "box",
          protocol: "ssh",
          target: { host: "127.0.0.1", port: sshd.port },
          knownHosts: { name: KNOWN_HOSTS, key: opts.knownHostsKey ?? "known_hosts" },
          credentials,
        },
      ],
      rules: opts.rules ?? [
        { name: "read", action: "allow", match: { ssh: { commands: ["echo *", "id", "uname *"] } } },
      ],
      ...(opts.masking ? { masking: opts.masking } : {}),
      ...(opts.audit ? { audit: opts.audit } : {}),
    },
  };
}

export interface SshSidecar {
  ctx: SidecarContext;
  guard: SshGuard;
  recorder: Recorder;
  metrics: Metrics;
  audit: AuditEvent[];
  port: number;
  logs(): string;
  secretsDir: string;
  setPolicies(policies: AgentAccessPolicy[]): void;
  writeSecret(name: string, key: string, value: string): Promise<void>;
  close(): Promise<void>;
}

export async function startSshSidecar(opts: {
  sshd: SshdServer;
  policies: AgentAccessPolicy[];
  guard?: SshGuardOptions;
  approvals?: ApprovalGate;
  verifierFor?: (c: CompiledConnection) => OidcVerifier | undefined;
  /** Where Vault logins find the projected token, and other credential-source settings. */
  credentials?: Pick<CredentialSourcesOptions, "tokenDir" | "vaultTimeoutMs">;
}): Promise<SshSidecar> {
  let current = opts.policies;
  const t = await testContext({
    prefix: "ssh",
    policies: opts.policies,
    secrets: {
      [SECRET]: { ca: opts.sshd.caPrivateKey, id_ed25519: opts.sshd.userPrivateKey },
      [KNOWN_HOSTS]: { known_hosts: `${opts.sshd.knownHosts}\n` },
    },
    // No caching: tests rewrite Secrets between sessions.
    secretTtlMs: 0,
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    ...(opts.verifierFor ? { verifierFor: opts.verifierFor } : {}),
  });
  const { ctx } = t;
  const { logger, policies } = ctx;
  const recorder = createRecorder({ logger, settingsFor: recordingSettingsFrom(() => current), flushMs: 20 });
  const guard = createSshGuard(ctx, {
    recorder,
    connectTimeoutMs: 5_000,
    ...(opts.approvals ? { approvals: opts.approvals } : {}),
    ...opts.guard,
  });
  const connection = policies.current().connections.get("box");
  if (!connection) throw new Error("policy has no connection box");
  const { port } = await guard.listen(connection, { port: 0 });
  return {
    ctx,
    guard,
    recorder,
    metrics: t.metrics,
    audit: t.audit,
    port,
    logs: t.logs,
    secretsDir: t.secretsDir,
    setPolicies(next) {
      current = next;
      t.setPolicies(next);
    },
    writeSecret: t.writeSecret,
    async close() {
      await guard.close();
      await recorder.close();
      await t.remove();
    },
  };
}

/** OpenSSH client options of an agent: no config, no prompts, the sidecar's host key trusted as it is. */
export const SSH_OPTS = [
  "-F",
  "/dev/null",
  "-o",
  "BatchMode=yes",
  "-o",
  "StrictHostKeyChecking=no",
  "-o",
  "UserKnownHostsFile=/dev/null",
  "-o",
  "LogLevel=ERROR",
];

export interface ExecResult {
  code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
}

/** An ssh2 client playing the agent, connected to the sidecar. */
export async function agentClient(
  port: number,
  opts: { password?: string; username?: string } = {},
): Promise<Client> {
  const client = new Client();
  await new Promise<void>((resolve, reject) => {
    client.once("ready", () => resolve());
    client.once("error", reject);
    client.connect({
      host: "127.0.0.1",
      port,
      username: opts.username ?? "agent",
      ...(opts.password !== undefined ? { password: opts.password } : {}),
      readyTimeout: 10_000,
      // The sidecar's host key is per start; the test trusts it as an in-pod agent would.
      hostVerifier: () => true,
    });
  });
  client.on("error", () => undefined);
  return client;
}

export function exec(
  client: Client,
  command: string,
  opts: { pty?: PseudoTtyOptions; input?: string } = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    client.exec(command, opts.pty ? { pty: opts.pty } : {}, (err, ch) => {
      if (err) return reject(err);
      let stdout = "";
      let stderr = "";
      let code: number | null = null;
      let signal: string | undefined;
      ch.on("data", (d: Buffer) => {
        stdout += d.toString("utf8");
      });
      ch.stderr.on("data", (d: Buffer) => {
        stderr += d.toString("utf8");
      });
      ch.on("exit", (c: number | null, s?: string) => {
        code = c;
        if (s) signal = s;
      });
      ch.on("close", () => resolve({ code, stdout, stderr, ...(signal ? { signal } : {}) }));
      if (opts.input !== undefined) ch.end(opts.input);
      else ch.end();
    });
  });
}

/** Runs one command on a fresh agent connection. */
export async function execOnce(port: number, command: string): Promise<ExecResult> {
  const client = await agentClient(port);
  try {
    return await exec(client, command);
  } finally {
    client.end();
  }
}

export interface ShellHandle {
  ch: ClientChannel;
  /** Everything received on the channel so far (stdout; with a pty, stderr is merged by the far end). */
  chunks: Buffer[];
  stderr: Buffer[];
  text(): string;
  exitCode(): number | null | undefined;
  closed: Promise<void>;
}

/** Opens a shell; listeners are attached before any data can arrive. */
export function openShell(client: Client, pty: PseudoTtyOptions): Promise<ShellHandle> {
  return new Promise((resolve, reject) => {
    client.shell(pty, (err, ch) => {
      if (err) return reject(err);
      const chunks: Buffer[] = [];
      const stderr: Buffer[] = [];
      let code: number | null | undefined;
      ch.on("data", (d: Buffer) => chunks.push(d));
      ch.stderr.on("data", (d: Buffer) => stderr.push(d));
      ch.on("exit", (c: number | null) => {
        code = c;
      });
      const closed = new Promise<void>((r) => ch.on("close", () => r()));
      resolve({
        ch,
        chunks,
        stderr,
        text: () => Buffer.concat(chunks).toString("utf8"),
        exitCode: () => code,
        closed,
      });
    });
  });
}

export async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
