// The real `airlock sidecar` entry point as a child process for the fault suite: policy files and
// secrets in a temp dir, the audit stream read from its stdout as a log collector would, and the
// process killed the way faults kill it (SIGTERM drain, SIGKILL crash).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import { freePort } from "../harness/postgres.ts";

export const AIRLOCK = new URL("../../bin/airlock.js", import.meta.url).pathname;
const KUBE_SIDECAR = new URL("./kube-sidecar.ts", import.meta.url).pathname;

export interface SidecarProcess {
  readonly child: ChildProcess;
  readonly adminPort: number;
  /** Every stdout line so far (log and audit lines share it, as in a pod). */
  stdout(): string;
  stderr(): string;
  /** The audit events on stdout so far. */
  audit(): AuditEvent[];
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
}

export interface Workdir {
  readonly dir: string;
  /** Writes `secrets/<name>/<key>` files. */
  secret(name: string, data: Record<string, string>): Promise<void>;
  /** Writes a policy file and returns its path. */
  policy(p: AgentAccessPolicy): Promise<string>;
  remove(): Promise<void>;
}

export async function workdir(prefix: string): Promise<Workdir> {
  const dir = await mkdtemp(join(tmpdir(), `airlock-faults-${prefix}-`));
  await mkdir(join(dir, "secrets"));
  return {
    dir,
    async secret(name, data) {
      await mkdir(join(dir, "secrets", name), { recursive: true });
      for (const [k, v] of Object.entries(data)) await writeFile(join(dir, "secrets", name, k), v);
    },
    async policy(p) {
      const file = join(dir, `${p.metadata.name}.yaml`);
      await writeFile(file, stringify(p));
      return file;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface SpawnOptions {
  /** Policy files (standalone) or `kubernetes: true` with podinfo and a kubeconfig. */
  policies?: string[];
  kubernetes?: { kubeconfig: string; podInfoDir: string };
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** stdout of the child: piped (default) or a file descriptor the test opened. */
  stdout?: "pipe" | number;
  /** A command the sidecar runs under (its argv appended), e.g. to give it a mount namespace. */
  wrap?: string[];
  /** Wait for /readyz (default), only for the start line, or not at all ("none"). */
  waitReady?: boolean | "none";
}

export async function spawnSidecar(w: Workdir, opts: SpawnOptions): Promise<SidecarProcess> {
  const adminPort = await freePort();
  // Kubernetes mode runs the composition through kube-sidecar.ts (credentials from a kubeconfig).
  const args = opts.kubernetes
    ? [
        KUBE_SIDECAR,
        JSON.stringify({
          podInfoDir: opts.kubernetes.podInfoDir,
          secretsDir: join(w.dir, "secrets"),
          hashKeyFile: join(w.dir, "hash.key"),
          adminPort,
        }),
      ]
    : [
        AIRLOCK,
        "sidecar",
        ...(opts.policies ?? []).flatMap((f) => ["--policy", f]),
        "--secrets",
        join(w.dir, "secrets"),
        "--service-account",
        "agents/agent",
        "--admin-port",
        String(adminPort),
        "--proxy-port",
        "0",
        "--hash-key-file",
        join(w.dir, "hash.key"),
        "--approver-token-file",
        join(w.dir, "approvers"),
        ...(opts.extraArgs ?? []),
      ];
  const [command, ...argv] = [...(opts.wrap ?? []), process.execPath, ...args] as [string, ...string[]];
  const child = spawn(command, argv, {
    env: {
      ...process.env,
      AIRLOCK_SSH_HOST_KEY_FILE: join(w.dir, "ssh_host_key"),
      ...(opts.kubernetes ? { KUBECONFIG: opts.kubernetes.kubeconfig } : {}),
      ...opts.env,
    },
    stdio: ["ignore", opts.stdout ?? "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const proc: SidecarProcess = {
    child,
    adminPort,
    stdout: () => out,
    stderr: () => err,
    audit: () =>
      out
        .split("\n")
        .filter((l) => l.includes('"audit":true'))
        .map((l) => JSON.parse(l) as AuditEvent),
    exited,
    kill: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
  const deadline = Date.now() + 45_000;
  for (; opts.waitReady !== "none"; ) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`the sidecar exited (${child.exitCode ?? child.signalCode}):\n${err}\n${out}`);
    const ok =
      opts.waitReady === false
        ? /airlock sidecar started/.test(out + err)
        : await fetch(`http://127.0.0.1:${adminPort}/readyz`).then(
            (r) => r.ok,
            () => false,
          );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the sidecar did not become ready in 45 s:\n${err}\n${out.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return proc;
}

/** Audit events of one connection. */
export const ofConnection = (events: AuditEvent[], name: string) =>
  events.filter((e) => e.connection === name);
