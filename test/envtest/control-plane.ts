// A real kube-apiserver + etcd on loopback (the envtest approach): no kubelet, no controllers.
// Binaries come from build-control-plane.sh (cached outside the repo). Users are client
// certificates signed by a per-run CA; the admin is in group system:masters.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, closeSync, constants, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { stringify } from "yaml";
import {
  type CertificateAuthority,
  createPki,
  type IssuedCert,
  issueClientCert,
  issueServingCert,
  loadCA,
  type Pki,
} from "./pki.ts";

const execFileP = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
const BUILD_SCRIPT = join(HERE, "build-control-plane.sh");

/** What a test process needs to reach a running control plane (serializable: vitest `provide`). */
export interface EnvtestInfo {
  /** Admin kubeconfig (client cert in group system:masters), data embedded. */
  kubeconfig: string;
  /** https://127.0.0.1:PORT */
  server: string;
  /** CA cert + key (to sign more users and webhook serving certs), API server and SA keys. */
  pkiDir: string;
  /** kube-apiserver, kubectl (same version as the server), etcd. */
  binDir: string;
  /** Temp dir of this control plane: logs, etcd data, user kubeconfigs. */
  workDir: string;
  /** `/version` gitVersion of the API server, e.g. v1.35.4. */
  version: string;
}

export interface User {
  name: string;
  groups: string[];
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
}

export interface KubectlOptions {
  /** Run as this user (anything with a kubeconfigPath: a {@link User}); default admin. */
  user?: { kubeconfigPath: string };
  /** Written to kubectl's stdin (e.g. with `apply -f -`). */
  stdin?: string;
  /** Kill kubectl after this long and throw; default 60 s. */
  timeoutMs?: number;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Access to a running control plane; what tests get (see connect.ts). */
export interface ClusterAccess {
  readonly info: EnvtestInfo;
  readonly server: string;
  readonly kubeconfigPath: string;
  /** Admin KubeConfig for @kubernetes/client-node. */
  readonly kubeConfig: KubeConfig;
  readonly kubectlPath: string;
  /** PEM of the CA that signs the API server cert, users and {@link issueServingCert} certs. */
  readonly caPem: string;
  /** Runs the cached kubectl (same version as the server) against this control plane. */
  kubectl(args: readonly string[], opts?: KubectlOptions): Promise<KubectlResult>;
  /** A client-certificate user: CN=name, O=each group. No RBAC is granted. */
  createUser(name: string, groups?: readonly string[]): Promise<User>;
  /** A serving cert signed by the cluster CA, e.g. for a webhook the API server calls (caBundle = caPem). */
  issueServingCert(hosts: readonly string[]): Promise<IssuedCert>;
}

export interface ControlPlane extends ClusterAccess {
  readonly workDir: string;
  readonly etcdLogPath: string;
  readonly apiserverLogPath: string;
  /** Milliseconds from spawning etcd to the API server answering /readyz. */
  readonly startupMs: number;
  /** SIGTERM, then SIGKILL after a few seconds; removes workDir unless AIRLOCK_KEEP_ENVTEST=1. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Directory with kube-apiserver, kubectl, etcd; default from build-control-plane.sh (built if missing). */
  binDir?: string;
  /** Default 120 s (2-core machines are slow on a cold page cache). */
  readyTimeoutMs?: number;
  /** Extra kube-apiserver flags, appended (later flags win); a function gets the PKI paths. */
  extraApiServerArgs?: readonly string[] | ((pki: Pki) => readonly string[]);
  /** Address the API server binds to and clients use (default 127.0.0.1), e.g. a bridge's IP for a node. */
  bindAddress?: string;
  /** More names/IPs in the API server's serving cert (e.g. the `kubernetes` Service IP). */
  servingHosts?: readonly string[];
  /**
   * For a cluster with a node (test/node): the ServiceAccount admission plugin on (pods get tokens;
   * a controller-manager creates the `default` ServiceAccounts) and the Node authorizer before RBAC.
   * Slice flags like these cannot be undone by extraApiServerArgs (later values append).
   */
  withNode?: boolean;
  /** Progress lines; default stderr. */
  log?: (line: string) => void;
}

const defaultLog = (line: string): void => {
  process.stderr.write(`[envtest] ${line}\n`);
};

// ---------------------------------------------------------------------------------------------
// Binaries

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function hasBinaries(binDir: string): boolean {
  return ["kube-apiserver", "kubectl", "etcd"].every((b) => isExecutable(join(binDir, b)));
}

function runBuildScript(args: readonly string[], stdout: "pipe" | "ignore"): Promise<string> {
  return new Promise((resolve, reject) => {
    // stderr is forwarded as it comes so build progress shows; its tail goes into the error.
    const child = spawn("bash", [BUILD_SCRIPT, ...args], { stdio: ["ignore", stdout, "pipe"] });
    let out = "";
    let err = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      process.stderr.write(d);
      err = (err + d).slice(-4000);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(out.trim());
      else {
        const cmd = [BUILD_SCRIPT, ...args].join(" ");
        const lines = err.trimEnd().split("\n").slice(-15).join("\n");
        reject(new Error(`${cmd} exited with ${code}:\n${lines}`));
      }
    });
  });
}

/** The binary directory, building the control plane first if it is not cached. */
export async function ensureBinaries(log: (line: string) => void = defaultLog): Promise<string> {
  const binDir = await runBuildScript(["--print-dir"], "pipe");
  if (!hasBinaries(binDir)) {
    log(`control-plane binaries missing in ${binDir}; building (first build takes 15-20 minutes)`);
    await runBuildScript([], "ignore");
    if (!hasBinaries(binDir)) throw new Error(`build-control-plane.sh finished but ${binDir} lacks binaries`);
  }
  return binDir;
}

// ---------------------------------------------------------------------------------------------
// Processes

const live = new Set<ChildProcess>();
/** Work dirs to remove if this process exits without stop() (e.g. vitest interrupted by Ctrl-C). */
const ownedDirs = new Set<string>();
let exitHookInstalled = false;
const WORKDIR_PREFIX = "airlock-envtest-";
const OWNER_FILE = "owner.pid";

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Normal or uncaught-exception exit of this process: SIGKILL what is still running.
  process.on("exit", () => {
    for (const child of live) killGroup(child, "SIGKILL");
    for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes work dirs left by runs that were killed outright (no exit handler ran). Only dirs with
 * an owner.pid whose process is gone; AIRLOCK_KEEP_ENVTEST runs write no owner.pid.
 */
function sweepStaleWorkDirs(): void {
  let entries: string[];
  try {
    entries = readdirSync(tmpdir()).filter((e) => e.startsWith(WORKDIR_PREFIX));
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = join(tmpdir(), entry);
    try {
      const pid = Number.parseInt(readFileSync(join(dir, OWNER_FILE), "utf8"), 10);
      if (pid > 0 && !pidAlive(pid)) rmSync(dir, { recursive: true, force: true });
    } catch {
      // no owner file (kept on purpose, or not ours): leave it
    }
  }
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  for (const dir of ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
    if (isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

const SETPRIV = findOnPath("setpriv");

export interface Managed {
  name: string;
  child: ChildProcess;
  logPath: string;
  exited: Promise<void>;
}

/**
 * Starts a server in its own process group with output to logPath. If this process dies
 * (even by SIGKILL) the kernel kills the server: `setpriv --pdeathsig KILL` sets
 * PR_SET_PDEATHSIG before exec. Without setpriv a small shell watchdog does the same by polling.
 */
export function spawnServer(name: string, bin: string, args: readonly string[], logPath: string): Managed {
  installExitHook();
  const fd = openSync(logPath, "a");
  const [cmd, argv] = SETPRIV ? [SETPRIV, ["--pdeathsig", "KILL", "--", bin, ...args]] : [bin, [...args]];
  let child: ChildProcess;
  try {
    child = spawn(cmd, argv, { stdio: ["ignore", fd, fd], detached: true });
  } finally {
    closeSync(fd);
  }
  live.add(child);
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      live.delete(child);
      resolve();
    });
    child.once("error", () => {
      live.delete(child);
      resolve();
    });
  });
  child.unref();
  if (!SETPRIV && child.pid !== undefined) {
    const watchdog = spawn(
      "sh",
      ["-c", 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -KILL -"$2" 2>/dev/null', "sh"].concat([
        String(process.pid),
        String(child.pid),
      ]),
      { stdio: "ignore", detached: true },
    );
    watchdog.unref();
    void exited.then(() => killGroup(watchdog, "SIGKILL"));
  }
  return { name, child, logPath, exited };
}

export async function stopProcess(p: Managed, graceMs = 5000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  killGroup(p.child, "SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    p.exited.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), graceMs);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    killGroup(p.child, "SIGKILL");
    await p.exited;
  }
}

export async function tail(path: string, lines = 30): Promise<string> {
  try {
    const text = await readFile(path, "utf8");
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  } catch (err) {
    return `(cannot read ${path}: ${(err as Error).message})`;
  }
}

// ---------------------------------------------------------------------------------------------
// Network helpers

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no port"))));
    });
  });
}

interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

interface HttpResult {
  status: number;
  body: string;
}

function httpsGet(url: string, tls: TlsMaterial, timeoutMs = 5000): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ...tls, method: "GET", timeout: timeoutMs, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Kubeconfig and access

function b64(pem: string): string {
  return Buffer.from(pem).toString("base64");
}

/** A kubeconfig with embedded data, readable by kubectl and KubeConfig.loadFromFile. */
export function kubeconfigYaml(server: string, caPem: string, user: string, cert: IssuedCert): string {
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "envtest", cluster: { server, "certificate-authority-data": b64(caPem) } }],
    users: [
      {
        name: user,
        user: { "client-certificate-data": b64(cert.certPem), "client-key-data": b64(cert.keyPem) },
      },
    ],
    contexts: [{ name: "envtest", context: { cluster: "envtest", user } }],
    "current-context": "envtest",
    preferences: {},
  });
}

function loadKubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

function safeFileName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 60) || "user";
}

/** Turns {@link EnvtestInfo} (e.g. injected by the vitest globalSetup) into a handle. */
export function attachControlPlane(info: EnvtestInfo): ClusterAccess {
  const kubectlPath = join(info.binDir, "kubectl");
  const kubeConfig = loadKubeConfig(info.kubeconfig);
  const caPemText = kubeConfig.getCurrentCluster()?.caData;
  const caPem = caPemText ? Buffer.from(caPemText, "base64").toString("utf8") : "";
  let ca: Promise<CertificateAuthority> | undefined;
  const getCA = () => {
    ca ??= loadCA(info.pkiDir);
    return ca;
  };

  async function kubectl(args: readonly string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
    const kubeconfig = opts.user?.kubeconfigPath ?? info.kubeconfig;
    const timeoutMs = opts.timeoutMs ?? 60_000;
    return new Promise((resolve, reject) => {
      const child = spawn(kubectlPath, [...args], {
        stdio: ["pipe", "pipe", "pipe"],
        env: { ...process.env, KUBECONFIG: kubeconfig, KUBECACHEDIR: join(info.workDir, "kube-cache") },
      });
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => {
        stdout += d;
      });
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
      });
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`kubectl ${args.join(" ")} timed out after ${timeoutMs} ms\n${stderr}`));
      }, timeoutMs);
      child.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr });
      });
      child.stdin.on("error", () => {
        // kubectl may exit before reading stdin; the exit code tells the story.
      });
      child.stdin.end(opts.stdin ?? "");
    });
  }

  async function createUser(name: string, groups: readonly string[] = []): Promise<User> {
    const cert = await issueClientCert(await getCA(), name, groups);
    const dir = join(info.workDir, "users");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const kubeconfigPath = join(dir, `${safeFileName(name)}-${randomBytes(4).toString("hex")}.kubeconfig`);
    await writeFile(kubeconfigPath, kubeconfigYaml(info.server, caPem, name, cert), { mode: 0o600 });
    return { name, groups: [...groups], kubeconfigPath, kubeConfig: loadKubeConfig(kubeconfigPath) };
  }

  return {
    info,
    server: info.server,
    kubeconfigPath: info.kubeconfig,
    kubeConfig,
    kubectlPath,
    caPem,
    kubectl,
    createUser,
    issueServingCert: async (hosts) => issueServingCert(await getCA(), hosts),
  };
}

// ---------------------------------------------------------------------------------------------
// Start

class StartError extends Error {
  retryable: boolean;
  constructor(message: string, retryable: boolean) {
    super(message);
    this.retryable = retryable;
  }
}

async function versionOf(bin: string, args: readonly string[], re: RegExp): Promise<string> {
  try {
    const { stdout } = await execFileP(bin, [...args], { timeout: 30_000 });
    return re.exec(stdout)?.[1] ?? stdout.trim().split("\n")[0] ?? "unknown";
  } catch (err) {
    return `unknown (${(err as Error).message})`;
  }
}

/**
 * Starts etcd and kube-apiserver on free loopback ports in a fresh temp dir and waits until
 * /readyz answers and the `default` namespace exists.
 */
export async function startControlPlane(opts: StartOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? defaultLog;
  const binDir = opts.binDir ?? (await ensureBinaries(log));
  if (!hasBinaries(binDir)) throw new Error(`no kube-apiserver/kubectl/etcd in ${binDir}`);
  const versions = Promise.all([
    versionOf(join(binDir, "kube-apiserver"), ["--version"], /Kubernetes (\S+)/),
    versionOf(join(binDir, "etcd"), ["--version"], /etcd Version: (\S+)/),
  ]);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(binDir, opts, log, versions);
    } catch (err) {
      // Ports are picked by bind-then-close; another process may have grabbed one meanwhile.
      if (err instanceof StartError && err.retryable && attempt < 3) {
        log(`start attempt ${attempt} failed (port in use?), retrying on new ports`);
        continue;
      }
      throw err;
    }
  }
}

async function startOnce(
  binDir: string,
  opts: StartOptions,
  log: (line: string) => void,
  versions: Promise<[string, string]>,
): Promise<ControlPlane> {
  const t0 = performance.now();
  sweepStaleWorkDirs();
  const workDir = await mkdtemp(join(tmpdir(), WORKDIR_PREFIX));
  const keep = process.env.AIRLOCK_KEEP_ENVTEST === "1";
  installExitHook();
  if (!keep) {
    ownedDirs.add(workDir);
    await writeFile(join(workDir, OWNER_FILE), `${process.pid}\n`);
  }
  const pkiDir = join(workDir, "pki");
  const bindAddress = opts.bindAddress ?? "127.0.0.1";
  const pki = await createPki(pkiDir, [bindAddress, ...(opts.servingHosts ?? [])]);
  const [etcdClient, etcdPeer, apiPort] = await distinctPorts();
  const etcdUrl = `http://127.0.0.1:${etcdClient}`;
  const peerUrl = `http://127.0.0.1:${etcdPeer}`;
  const server = `https://${bindAddress}:${apiPort}`;
  const etcdLogPath = join(workDir, "etcd.log");
  const apiserverLogPath = join(workDir, "kube-apiserver.log");

  const processes: Managed[] = [];
  const cleanup = async () => {
    for (const p of processes.reverse()) await stopProcess(p);
    if (!keep) await rm(workDir, { recursive: true, force: true });
    ownedDirs.delete(workDir);
  };
  const failure = async (what: string, retryable: boolean): Promise<never> => {
    const msg =
      `${what}\n--- ${apiserverLogPath} (tail) ---\n${await tail(apiserverLogPath)}` +
      `\n--- ${etcdLogPath} (tail) ---\n${await tail(etcdLogPath)}`;
    await cleanup();
    throw new StartError(
      keep ? msg : `${msg}\n(logs removed; set AIRLOCK_KEEP_ENVTEST=1 to keep them)`,
      retryable,
    );
  };
  const inUse = async () =>
    /address already in use/i.test(`${await tail(etcdLogPath, 200)}\n${await tail(apiserverLogPath, 200)}`);

  const timeoutMs = opts.readyTimeoutMs ?? 120_000;
  const deadline = Date.now() + timeoutMs;

  try {
    await mkdir(join(workDir, "etcd"), { mode: 0o700 });
    const etcd = spawnServer(
      "etcd",
      join(binDir, "etcd"),
      [
        `--data-dir=${join(workDir, "etcd")}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--name=envtest`,
        `--initial-cluster=envtest=${peerUrl}`,
        "--unsafe-no-fsync=true",
        "--log-level=warn",
      ],
      etcdLogPath,
    );
    processes.push(etcd);

    // etcd first: if it cannot bind, the API server would just retry until the timeout.
    for (;;) {
      if (etcd.child.exitCode !== null || etcd.child.signalCode !== null) {
        return await failure(`etcd exited (${etcd.child.exitCode ?? etcd.child.signalCode})`, await inUse());
      }
      if (Date.now() > deadline) return await failure(`etcd not healthy after ${timeoutMs} ms`, false);
      try {
        const res = await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(2000) });
        if (res.ok && /"health":\s*"true"/.test(await res.text())) break;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }

    const apiserver = spawnServer(
      "kube-apiserver",
      join(binDir, "kube-apiserver"),
      [
        `--etcd-servers=${etcdUrl}`,
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        ...(opts.withNode
          ? ["--enable-admission-plugins=NodeRestriction", "--authorization-mode=Node,RBAC"]
          : ["--disable-admission-plugins=ServiceAccount", "--authorization-mode=RBAC"]),
        `--secure-port=${apiPort}`,
        `--bind-address=${bindAddress}`,
        `--cert-dir=${join(workDir, "apiserver-certs")}`,
        `--tls-cert-file=${pki.servingCertPath}`,
        `--tls-private-key-file=${pki.servingKeyPath}`,
        `--client-ca-file=${pki.caCertPath}`,
        `--service-account-issuer=${server}/`,
        `--service-account-key-file=${pki.serviceAccountPubPath}`,
        `--service-account-signing-key-file=${pki.serviceAccountKeyPath}`,
        ...(typeof opts.extraApiServerArgs === "function"
          ? opts.extraApiServerArgs(pki)
          : (opts.extraApiServerArgs ?? [])),
      ],
      apiserverLogPath,
    );
    processes.push(apiserver);

    const tls: TlsMaterial = { ca: pki.ca.certPem, cert: pki.admin.certPem, key: pki.admin.keyPem };
    let last = "no answer yet";
    for (;;) {
      if (apiserver.child.exitCode !== null || apiserver.child.signalCode !== null) {
        return await failure(
          `kube-apiserver exited (${apiserver.child.exitCode ?? apiserver.child.signalCode})`,
          await inUse(),
        );
      }
      if (etcd.child.exitCode !== null || etcd.child.signalCode !== null) {
        return await failure(`etcd exited (${etcd.child.exitCode ?? etcd.child.signalCode})`, false);
      }
      if (Date.now() > deadline) {
        return await failure(`kube-apiserver not ready after ${timeoutMs} ms at ${server}: ${last}`, false);
      }
      try {
        const ready = await httpsGet(`${server}/readyz`, tls);
        if (ready.status === 200) {
          // Namespace "default" is created by a post-start controller, shortly after /readyz.
          const ns = await httpsGet(`${server}/api/v1/namespaces/default`, tls);
          if (ns.status === 200) break;
          last = `GET /api/v1/namespaces/default: ${ns.status}`;
        } else {
          last = `GET /readyz: ${ready.status} ${ready.body
            .split("\n")
            .filter((l) => l.includes("[-]"))
            .join("; ")}`;
        }
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(200);
    }
    const startupMs = performance.now() - t0;

    const versionRes = await httpsGet(`${server}/version`, tls);
    const gitVersion = (JSON.parse(versionRes.body) as { gitVersion?: string }).gitVersion ?? "unknown";
    const [apiBinVersion, etcdVersion] = await versions;
    log(
      `kube-apiserver ${apiBinVersion} (/version ${gitVersion}), etcd ${etcdVersion} on ${server}` +
        ` (ready in ${(startupMs / 1000).toFixed(1)} s; work dir ${workDir})`,
    );

    const kubeconfigPath = join(workDir, "admin.kubeconfig");
    await writeFile(kubeconfigPath, kubeconfigYaml(server, pki.ca.certPem, "envtest-admin", pki.admin), {
      mode: 0o600,
    });
    const info: EnvtestInfo = {
      kubeconfig: kubeconfigPath,
      server,
      pkiDir,
      binDir,
      workDir,
      version: gitVersion,
    };
    const access = attachControlPlane(info);
    let stopped: Promise<void> | undefined;
    return {
      ...access,
      workDir,
      etcdLogPath,
      apiserverLogPath,
      startupMs,
      stop: () => {
        stopped ??= (async () => {
          await cleanup();
          if (keep) log(`AIRLOCK_KEEP_ENVTEST=1: kept ${workDir}`);
        })();
        return stopped;
      },
    };
  } catch (err) {
    if (err instanceof StartError) throw err;
    await cleanup();
    throw err;
  }
}

async function distinctPorts(): Promise<[number, number, number]> {
  const ports = new Set<number>();
  while (ports.size < 3) ports.add(await freePort());
  const [a = 0, b = 0, c = 0] = ports;
  return [a, b, c];
}
