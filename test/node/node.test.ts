// Airlock on a real node: the chart installed with helm, a labelled namespace, agent pods that
// really start (native sidecar first, capture rules installed by airlock-init in the pod's network
// namespace), and everything asserted from inside the agent container with ordinary clients
// (psql, curl) against a real PostgreSQL and an HTTP service outside the pods.
//
//   bash test/node/run.sh        (or: npx vitest run --config test/node/vitest.config.ts)
//
// Needs root, containerd, runc, CNI plugins, umoci and debootstrap (run.sh installs them); without
// them the suite is skipped and says why.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { User } from "../envtest/control-plane.ts";
import {
  AGENT_IMAGE,
  type HttpUpstream,
  helmInstall,
  kubectlPlugin,
  ok,
  poll,
  SYSTEM_NS,
  startHttpUpstream,
  startWarehouse,
  type Warehouse,
} from "./cluster.ts";
import { BRIDGE, NODE_IP, nodeProblem, type RunningNode, startNode } from "./node.ts";

const problem = process.env.AIRLOCK_NODE_SKIP
  ? `AIRLOCK_NODE_SKIP=${process.env.AIRLOCK_NODE_SKIP}`
  : nodeProblem();
if (problem) process.stderr.write(`[node] suite skipped: no node can start here: ${problem}\n`);

const NS = "agents";
const title = problem ? `Airlock on a real node — skipped: ${problem}` : "Airlock on a real node";

interface PodStatus {
  status: {
    phase: string;
    podIP?: string;
    initContainerStatuses?: ContainerStatus[];
    containerStatuses?: ContainerStatus[];
  };
  spec: { initContainers?: { name: string }[]; containers: { name: string }[] };
  metadata: { name: string; annotations?: Record<string, string> };
}
interface ContainerStatus {
  name: string;
  ready: boolean;
  started?: boolean;
  state: {
    running?: { startedAt: string };
    terminated?: { exitCode: number; reason?: string; startedAt: string };
  };
}

describe.skipIf(problem !== undefined)(title, () => {
  let node: RunningNode;
  let warehouse: Warehouse;
  let tickets: HttpUpstream;
  let approver: User;
  let agentPod = "";
  const timings: Record<string, number> = {};

  const kubectl = (args: readonly string[], opts: { stdin?: string; timeoutMs?: number } = {}) =>
    node.cluster.kubectl(args, opts);
  /** A command in the agent container (as the image's user unless the pod says otherwise). */
  const inAgent = (pod: string, cmd: readonly string[], timeoutMs = 60_000) =>
    kubectl(["exec", "-n", NS, pod, "-c", "agent", "--", ...cmd], { timeoutMs });
  const pod = async (name: string): Promise<PodStatus> =>
    JSON.parse(
      ok(await kubectl(["get", "pod", "-n", NS, name, "-o", "json"]), `get pod ${name}`),
    ) as PodStatus;
  const describePod = async (name: string) =>
    `${(await kubectl(["describe", "pod", "-n", NS, name])).stdout}\n${(await kubectl(["logs", "-n", NS, name, "-c", "airlock-sidecar", "--tail=30"])).stdout}\n${await node.diagnostics()}`;

  const policy = () => `
apiVersion: v1
kind: Secret
metadata: { name: warehouse-analyst, namespace: ${NS} }
stringData:
  username: ${warehouse.user}
  password: ${warehouse.password}
---
apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: analyst, namespace: ${NS} }
spec:
  podSelector: { matchLabels: { app: analyst } }
  connections:
    - name: warehouse
      protocol: postgres
      target: { host: "${NODE_IP}", port: ${warehouse.pg.port} }
      tls: { mode: disable }
      database: ${warehouse.database}
      credentials: { secretRef: { name: warehouse-analyst } }
    - name: tickets
      protocol: http
      target: { host: "${NODE_IP}", port: ${tickets.port} }
      tls: { mode: disable }
  rules:
    - name: read-warehouse
      action: allow
      connections: [warehouse]
      match: { sql: { statements: [read] } }
    - name: delete-needs-dba
      action: requireApproval
      connections: [warehouse]
      match: { sql: { statements: [delete] } }
      approval:
        approvers: { groups: [dba] }
        timeout: 3m
    - name: read-tickets
      action: allow
      connections: [tickets]
      match: { http: { methods: [GET] } }
  masking:
    - name: emails
      detectors: [email]
      strategy: partial
`;

  const agentEnv = () => `
          env:
            - { name: PGHOST, value: "${NODE_IP}" }
            - { name: PGPORT, value: "${warehouse.pg.port}" }
            - { name: PGUSER, value: analyst }
            - { name: PGDATABASE, value: ${warehouse.database} }
            - { name: PGCONNECT_TIMEOUT, value: "10" }`;

  beforeAll(async () => {
    const t0 = performance.now();
    node = await startNode();
    timings.node = performance.now() - t0;
    [warehouse, tickets] = await Promise.all([startWarehouse(), startHttpUpstream()]);

    ok(
      await kubectl(["apply", "-f", "-"], {
        stdin: `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${NS}\n  labels: { airlock.dev/inject: enabled }\n`,
      }),
      "namespace",
    );
    const t1 = performance.now();
    const helm = await helmInstall(node, [NS]);
    if (helm.code !== 0)
      throw new Error(
        `helm install failed:\n${helm.stderr}\n${(await kubectl(["get", "pods", "-A", "-o", "wide"])).stdout}\n${await node.diagnostics()}`,
      );
    timings.helm = performance.now() - t1;

    approver = await node.cluster.createUser("dana", ["dba"]);
    ok(
      await kubectl([
        "create",
        "clusterrolebinding",
        "airlock-dba",
        "--clusterrole=airlock-approver",
        "--group=dba",
      ]),
      "approver binding",
    );
    ok(await kubectl(["apply", "-f", "-"], { stdin: policy() }), "policy");
    await poll("policy analyst Ready", async () => {
      const r = await kubectl([
        "get",
        "aap",
        "-n",
        NS,
        "analyst",
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ]);
      return r.stdout === "True" ? true : undefined;
    });

    const t2 = performance.now();
    ok(
      await kubectl(["apply", "-f", "-"], {
        stdin: `
apiVersion: apps/v1
kind: Deployment
metadata: { name: analyst, namespace: ${NS} }
spec:
  replicas: 1
  selector: { matchLabels: { app: analyst } }
  template:
    metadata: { labels: { app: analyst } }
    spec:
      terminationGracePeriodSeconds: 15
      containers:
        - name: agent
          image: ${AGENT_IMAGE}
          imagePullPolicy: Never
          command: [sleep, infinity]${agentEnv()}
`,
      }),
      "agent deployment",
    );
    agentPod = await poll(
      "the agent pod Ready",
      async () => {
        const r = await kubectl(["get", "pods", "-n", NS, "-l", "app=analyst", "-o", "json"]);
        const items = (JSON.parse(r.stdout) as { items: PodStatus[] }).items;
        const ready = items.find((p) => p.status.containerStatuses?.every((c) => c.ready));
        return ready?.metadata.name;
      },
      180_000,
      async () =>
        `${(await kubectl(["get", "pods", "-A", "-o", "wide"])).stdout}\n${await node.diagnostics()}`,
    );
    timings.agentPod = performance.now() - t2;
    process.stderr.write(
      `[node] timings: node ${(timings.node / 1000).toFixed(1)} s, helm install ${(timings.helm / 1000).toFixed(1)} s, agent pod Ready ${(timings.agentPod / 1000).toFixed(1)} s\n`,
    );
  });

  afterAll(async () => {
    if (process.env.AIRLOCK_NODE_DEBUG && agentPod) {
      for (const extra of [[], ["--previous"]]) {
        const r = await kubectl(["logs", "-n", NS, agentPod, "-c", "airlock-sidecar", "--tail=60", ...extra]);
        process.stderr.write(`--- sidecar logs ${extra.join(" ")}\n${r.stdout}${r.stderr}\n`);
      }
      process.stderr.write(`${(await kubectl(["get", "pods", "-A", "-o", "wide"])).stdout}\n`);
    }
    await node?.stop();
    await Promise.all([warehouse?.pg.stop(), tickets?.close()]);
  });

  it("runs the injected pod: airlock-init finished, the native sidecar started and became ready before the agent", async () => {
    const p = await pod(agentPod);
    expect(p.spec.initContainers?.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
    const [init, sidecar] = p.status.initContainerStatuses ?? [];
    expect(init?.state.terminated?.exitCode, "airlock-init exit code").toBe(0);
    expect(sidecar?.name).toBe("airlock-sidecar");
    expect(sidecar?.started && sidecar.ready, "sidecar started and ready").toBe(true);
    const agent = p.status.containerStatuses?.find((c) => c.name === "agent");
    const sidecarStart = Date.parse(sidecar?.state.running?.startedAt ?? "");
    const agentStart = Date.parse(agent?.state.running?.startedAt ?? "");
    expect(Number.isFinite(sidecarStart) && Number.isFinite(agentStart)).toBe(true);
    // The startup probe gates the agent: it starts no earlier than the sidecar (second precision).
    expect(agentStart).toBeGreaterThanOrEqual(sidecarStart);
    expect(p.metadata.annotations?.["airlock.dev/status"]).toContain('"policies":["analyst"]');
  });

  it("an allowed query through the transparent capture returns masked rows", async () => {
    // psql dials the upstream's own address; the pod's capture rules hand it to the sidecar, which
    // logs in with the Secret's credentials (the agent has none) and masks the e-mails.
    const r = await inAgent(agentPod, ["psql", "-XAt", "-c", "select id, email from customers order by id"]);
    if (r.code !== 0) expect.fail(`psql failed: ${r.stderr}\n${await describePod(agentPod)}`);
    const rows = r.stdout.trim().split("\n");
    expect(rows).toHaveLength(3);
    expect(r.stdout).not.toContain("ada.lovelace@example.com");
    expect(r.stdout).not.toContain("lovelace");
    expect(rows[0]).toMatch(/^1\|.*@.*\.com$/);
  });

  it("a DROP is refused by the sidecar and never reaches the database", async () => {
    const r = await inAgent(agentPod, ["psql", "-XAt", "-c", "drop table customers"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Airlock denied/);
    expect(await warehouse.pg.sql("select count(*) from customers")).toBe("3");
  });

  it("HTTP: a GET through the sidecar is masked (proxy env and raw capture alike)", async () => {
    const before = tickets.seen.length;
    for (const args of [[], ["--noproxy", "*"]]) {
      const r = await inAgent(agentPod, [
        "curl",
        "-sS",
        "-m",
        "10",
        ...args,
        `http://${NODE_IP}:${tickets.port}/tickets`,
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("printer on fire");
      expect(r.stdout).not.toContain("grace.hopper@example.com");
    }
    expect(tickets.seen.length - before).toBe(2);
  });

  it("a DELETE waits for an approval; `kubectl airlock approve` by a real approver lets it complete", async () => {
    const held: ChildProcess = spawn(
      node.cluster.kubectlPath,
      [
        "exec",
        "-n",
        NS,
        agentPod,
        "-c",
        "agent",
        "--",
        "psql",
        "-XAt",
        "-c",
        "delete from customers where id = 3",
      ],
      { env: { ...process.env, KUBECONFIG: node.cluster.kubeconfigPath }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    held.stdout?.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    held.stderr?.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    const done = new Promise<number>((resolve) => held.on("close", (c) => resolve(c ?? 1)));
    try {
      const name = await poll("a pending AccessRequest", async () => {
        const r = await kubectl(["get", "areq", "-n", NS, "-o", "json"]);
        const items = (
          JSON.parse(r.stdout) as { items: { metadata: { name: string }; status?: { phase?: string } }[] }
        ).items;
        return items.find((i) => (i.status?.phase ?? "Pending") === "Pending")?.metadata.name;
      });
      // Still held: the statement has not run.
      expect(await warehouse.pg.sql("select count(*) from customers")).toBe("3");
      const approve = await kubectlPlugin(
        node,
        ["approve", name, "-n", NS, "--comment", "node suite"],
        approver,
      );
      expect(approve.code, approve.stderr).toBe(0);
      expect(await done).toBe(0);
      expect(out.trim()).toBe("DELETE 1");
      expect(await warehouse.pg.sql("select count(*) from customers")).toBe("2");
      const areq = JSON.parse(ok(await kubectl(["get", "areq", "-n", NS, name, "-o", "json"]), "areq")) as {
        status: { phase: string; approvals: { user: string }[] };
      };
      expect(areq.status.phase).toBe("Approved");
      expect(areq.status.approvals.map((a) => a.user)).toEqual(["dana"]);
    } finally {
      held.kill("SIGKILL");
      if (err && !out) process.stderr.write(`[node] held delete stderr: ${err}\n`);
    }
  });

  it("a direct connection around the sidecar fails: another port, another pod's IP, IPv6", async () => {
    const injector = JSON.parse(
      ok(await kubectl(["get", "pods", "-n", SYSTEM_NS, "-o", "json"]), "injector pods"),
    ) as { items: PodStatus[] };
    const injectorIp = injector.items[0]?.status.podIP;
    expect(injectorIp).toBeTruthy();
    const apiPort = new URL(node.cluster.server).port;
    const before = tickets.seen.length;
    const attempts: [string, string[]][] = [
      [
        "the API server's port on the node",
        ["curl", "-sS", "-m", "5", "--noproxy", "*", "-k", `https://${NODE_IP}:${apiPort}/version`],
      ],
      [
        "the injector pod by IP",
        ["curl", "-sS", "-m", "5", "--noproxy", "*", "-k", `https://${injectorIp}:9443/`],
      ],
      ["the kubernetes Service", ["curl", "-sS", "-m", "5", "--noproxy", "*", "-k", "https://10.0.0.1/api"]],
    ];
    // IPv6: the node's link-local address on the bridge, where the tickets service also listens.
    const v6 = /inet6 (fe80::[0-9a-f:]+)\//.exec(
      execFileSync("ip", ["-6", "-o", "addr", "show", "dev", BRIDGE]).toString(),
    )?.[1];
    expect(v6, "the bridge has an IPv6 link-local address").toBeTruthy();
    attempts.push([
      "the tickets service over IPv6",
      ["curl", "-sS", "-m", "5", "-g", "--noproxy", "*", `http://[${v6}%eth0]:${tickets.port}/`],
    ]);
    for (const [what, cmd] of attempts) {
      const r = await inAgent(agentPod, cmd);
      expect(r.code, `${what} must be unreachable; got: ${r.stdout}`).not.toBe(0);
    }
    expect(tickets.seen.length, "nothing reached the tickets service").toBe(before);
  });
});
