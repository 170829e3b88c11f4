// What the fault suites set up alike: a real PostgreSQL with an agent role whose password is the
// `db` secret in the sidecar's workdir, a real HTTP upstream (standalone suites) or a test
// cluster and a relay to the API server the test can cut (Kubernetes suites), and the policies
// that put the sidecar in front of them.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AgentAccessPolicy, Connection, Rule } from "../../api/src/index.ts";
import { agentPolicy, type Cluster, setUpCluster } from "../approvals/cluster.ts";
import type { Envtest } from "../envtest/connect.ts";
import { type PgUser, type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type Relay, relay } from "../harness/relay.ts";
import { startUpstream, type Upstream } from "../http/harness.ts";
import { STATEMENT_LOG } from "./load.ts";
import {
  type SidecarProcess,
  type SpawnOptions,
  spawnSidecar,
  type Workdir,
  workdir,
} from "./sidecar-process.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface DatabaseOptions {
  /** The PostgreSQL role the sidecar logs in as (its password goes to the `db` secret). */
  role: string;
  /** Run as the superuser once the role exists: the suite's tables and grants. */
  sql?: string;
  /** log_statement=all into the data directory (serverStatements reads it). */
  statementLog?: boolean;
}

const database = (opts: DatabaseOptions) =>
  startPostgres(opts.statementLog ? { settings: STATEMENT_LOG } : {});

async function agentRole(server: PostgresServer, w: Workdir, opts: DatabaseOptions): Promise<PgUser> {
  const user = await server.createUser(opts.role);
  if (opts.sql) await server.sql(opts.sql);
  await w.secret("db", { username: user.user, password: user.password });
  return user;
}

/** The sidecar's `db` connection: the agent's plain-text listener in front of `server`. */
export const dbConnection = (server: PostgresServer, listenPort: number): Connection => ({
  name: "db",
  protocol: "postgres",
  target: { host: "127.0.0.1", port: server.port },
  listen: { port: listenPort },
  tls: { mode: "disable" },
  database: server.database,
  credentials: { secretRef: { name: "db" } },
});

/** The sidecar's `api` connection: a plain-HTTP listener in front of `upstream`. */
export const apiConnection = (upstream: Upstream, listenPort: number): Connection => ({
  name: "api",
  protocol: "http",
  target: { host: "127.0.0.1", port: upstream.port },
  listen: { port: listenPort },
  tls: { mode: "disable" },
});

export interface Standalone {
  server: PostgresServer;
  upstream: Upstream;
  w: Workdir;
  user: PgUser;
  /** Writes a policy allowing everything on `db` (PostgreSQL) and `api` (HTTP); returns its file. */
  policyFile(name: string, dbPort: number, apiPort: number): Promise<string>;
  close(): Promise<void>;
}

/**
 * PostgreSQL, an HTTP upstream answering 200 with the request's URL (after `httpDelayMs`, a base
 * and a random extra, so that requests are in flight when a fault comes), and a workdir.
 */
export async function standalone(
  prefix: string,
  opts: DatabaseOptions & { httpDelayMs?: { base: number; jitter: number } },
): Promise<Standalone> {
  const delay = opts.httpDelayMs;
  const [server, upstream, w] = await Promise.all([
    database(opts),
    startUpstream(async (req, res) => {
      if (delay) await sleep(delay.base + Math.floor(Math.random() * delay.jitter));
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ url: req.url }));
    }),
    workdir(prefix),
  ]);
  const user = await agentRole(server, w, opts);
  return {
    server,
    upstream,
    w,
    user,
    policyFile: (name, dbPort, apiPort) =>
      w.policy({
        apiVersion: "airlock.dev/v1alpha1",
        kind: "AgentAccessPolicy",
        metadata: { name, namespace: "agents" },
        spec: {
          connections: [dbConnection(server, dbPort), apiConnection(upstream, apiPort)],
          rules: [{ name: "everything", action: "allow" }],
        },
      }),
    async close() {
      await upstream.close();
      await server.stop();
      await w.remove();
    },
  };
}

export interface InCluster {
  c: Cluster;
  server: PostgresServer;
  w: Workdir;
  /** The API server through a relay the test cuts (`link.down()`) and restores (`link.up()`). */
  link: Relay;
  /** An AgentAccessPolicy selecting the pods labelled app=agent, with the `db` connection. */
  policy(name: string, dbPort: number, rules: Rule[]): AgentAccessPolicy;
  /**
   * The sidecar of pod `pod` in Kubernetes mode, talking to the API server through the relay (on
   * `linkPort`, what `link.up()` returned).
   */
  spawn(
    pod: string,
    linkPort: number,
    opts?: { podInfoDir?: string } & Pick<SpawnOptions, "waitReady">,
  ): Promise<SidecarProcess>;
  close(): Promise<void>;
}

/** A test cluster (namespace `prefix-…`), PostgreSQL, a workdir and a relay (not up yet). */
export async function inCluster(k8s: Envtest, prefix: string, opts: DatabaseOptions): Promise<InCluster> {
  const [c, server, w] = await Promise.all([setUpCluster(k8s, prefix), database(opts), workdir(prefix)]);
  await agentRole(server, w, opts);
  const link = relay(new URL(k8s.server));
  return {
    c,
    server,
    w,
    link,
    policy: (name, dbPort, rules) =>
      agentPolicy(c, name, { connections: [dbConnection(server, dbPort)], rules }),
    async spawn(pod, linkPort, o = {}) {
      const kubeconfig = join(w.dir, `${pod}.kubeconfig`);
      await writeFile(kubeconfig, c.agentKubeConfig(`https://127.0.0.1:${linkPort}`).exportConfig());
      return spawnSidecar(w, {
        kubernetes: { kubeconfig, podInfoDir: o.podInfoDir ?? (await c.podInfo(pod)) },
        ...(o.waitReady !== undefined ? { waitReady: o.waitReady } : {}),
      });
    },
    async close() {
      await link.down();
      await server.stop();
      await w.remove();
    },
  };
}
