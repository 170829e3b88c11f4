// What the node suite runs against: the node (node.ts), the chart installed with helm, and the
// upstreams an agent reaches — a real PostgreSQL and an HTTP service, both on the node's address
// (outside every pod), so that the only way to them from an agent is through its sidecar.
import { spawn } from "node:child_process";
import { appendFile, mkdtemp, symlink } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureHelm } from "../chart/helm.ts";
import type { KubectlResult } from "../envtest/control-plane.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { NODE_IP, POD_CIDR, type RunningNode } from "./node.ts";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
export const AGENT_IMAGE = "airlock.test/agent:node-e2e";
export const IMAGE_TAG = "node-e2e";
export const SYSTEM_NS = "airlock-system";

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export function runProcess(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; stdin?: string } = {},
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args], {
      env: { ...process.env, ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(opts.stdin ?? "");
  });
}

/** An HTTP upstream on the node's address; counts what reaches it (a bypass would show here). */
export interface HttpUpstream {
  port: number;
  /** Requests received, by remote address and path. */
  seen: { remote: string; method: string; path: string }[];
  close(): Promise<void>;
}

export async function startHttpUpstream(): Promise<HttpUpstream> {
  const seen: HttpUpstream["seen"] = [];
  const server: Server = createServer((req, res) => {
    seen.push({ remote: req.socket.remoteAddress ?? "", method: req.method ?? "", path: req.url ?? "" });
    res.setHeader("content-type", "application/json");
    res.end(
      JSON.stringify({
        tickets: [{ id: 7, requester: "grace.hopper@example.com", title: "printer on fire" }],
      }),
    );
  });
  // Dual stack: a connection over IPv6 (the bridge's link-local address) would be answered too.
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "::", () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    port,
    seen,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

export interface Warehouse {
  pg: PostgresServer;
  user: string;
  password: string;
  database: string;
}

/** PostgreSQL listening on the node's address too, accepting SCRAM logins from pod addresses. */
export async function startWarehouse(): Promise<Warehouse> {
  const pg = await startPostgres({ settings: { listen_addresses: `'127.0.0.1,${NODE_IP}'` } });
  await appendFile(join(pg.dataDir, "pg_hba.conf"), `host all all ${POD_CIDR} scram-sha-256\n`);
  await pg.sql("select pg_reload_conf()");
  const analyst = await pg.createUser("analyst");
  await pg.sql(`
    create table customers (id int primary key, name text, email text);
    insert into customers values (1, 'Ada', 'ada.lovelace@example.com'), (2, 'Grace', 'grace.hopper@example.com'),
      (3, 'Edsger', 'edsger.dijkstra@example.com');
    grant select, delete on customers to analyst;
  `);
  return { pg, user: analyst.user, password: analyst.password, database: pg.database };
}

/** helm with its own config dirs, against the node's cluster. */
export async function helmInstall(node: RunningNode, agentNamespaces: readonly string[]): Promise<Result> {
  const home = await mkdtemp(join(tmpdir(), "airlock-node-helm-"));
  return runProcess(
    await ensureHelm(),
    [
      "install",
      "airlock",
      join(ROOT, "charts/airlock"),
      "--namespace",
      SYSTEM_NS,
      "--create-namespace",
      "--set",
      `image.tag=${IMAGE_TAG}`,
      // Images are in the node's containerd only; there is no registry to pull from.
      "--set",
      "image.pullPolicy=Never",
      "--set",
      "injector.replicas=1",
      "--set",
      "injector.podDisruptionBudget.enabled=false",
      "--set",
      `sidecar.rbac.namespaces={${agentNamespaces.join(",")}}`,
      "--wait",
      "--timeout",
      "4m",
    ],
    {
      env: {
        KUBECONFIG: node.cluster.kubeconfigPath,
        HELM_CONFIG_HOME: join(home, "config"),
        HELM_CACHE_HOME: join(home, "cache"),
        HELM_DATA_HOME: join(home, "data"),
      },
      timeoutMs: 5 * 60_000,
    },
  );
}

/**
 * `kubectl airlock ...` as kubectl runs it: the plugin executable found on PATH by kubectl (the
 * cached v1.35.4 one), with the user's kubeconfig.
 */
export async function kubectlPlugin(
  node: RunningNode,
  args: readonly string[],
  user: { kubeconfigPath: string },
): Promise<Result> {
  const dir = await mkdtemp(join(tmpdir(), "airlock-node-plugin-"));
  await symlink(join(ROOT, "bin/kubectl-airlock.js"), join(dir, "kubectl-airlock"));
  return runProcess(node.cluster.kubectlPath, ["airlock", ...args], {
    env: {
      KUBECONFIG: user.kubeconfigPath,
      PATH: [dir, dirname(process.execPath), process.env.PATH ?? ""].join(":"),
    },
    timeoutMs: 60_000,
  });
}

export async function poll<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 120_000,
  onTimeout?: () => Promise<string>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const extra = onTimeout ? `\n${await onTimeout()}` : "";
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}${extra}`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

export function ok(r: KubectlResult | Result, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}
