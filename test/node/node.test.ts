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
  restartCount?: number;
  lastState?: { terminated?: { reason?: string } };
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
  # Not the Deployment's own selector: bare pods and Jobs below carry team=data too, and a
  # ReplicaSet adopts (and scales away) orphan pods that match its selector.
  podSelector: { matchLabels: { team: data } }
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

  /** The agent's libpq settings, as the `env:` of a container whose fields are indented `indent`. */
  const agentEnv = (indent = 10) =>
    `\n${" ".repeat(indent)}env:${[
      `PGHOST, value: "${NODE_IP}"`,
      `PGPORT, value: "${warehouse.pg.port}"`,
      "PGUSER, value: analyst",
      `PGDATABASE, value: ${warehouse.database}`,
      'PGCONNECT_TIMEOUT, value: "10"',
    ]
      .map((e) => `\n${" ".repeat(indent + 2)}- { name: ${e} }`)
      .join("")}`;

  /** A bare agent pod the policy selects (team=data), as `runAsUser` when given. */
  const agentPodYaml = (name: string, opts: { runAsUser?: number; script?: string; grace?: number } = {}) => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${NS}, labels: { team: data, app: ${name} } }
spec:
  terminationGracePeriodSeconds: ${opts.grace ?? 5}
  restartPolicy: Never${
    opts.runAsUser === undefined
      ? ""
      : `
  securityContext: { runAsUser: ${opts.runAsUser}, runAsGroup: ${opts.runAsUser}, runAsNonRoot: false }`
  }
  containers:
    - name: agent
      image: ${AGENT_IMAGE}
      imagePullPolicy: Never
      command: [sh, -c, ${JSON.stringify(opts.script ?? "exec sleep infinity")}]${agentEnv(6)}
`;
  const waitReady = (name: string) =>
    poll(
      `pod ${name} Ready`,
      async () => {
        const p = await pod(name).catch(() => undefined);
        return p?.status.containerStatuses?.every((c) => c.ready) ? true : undefined;
      },
      120_000,
      () => describePod(name),
    );

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
    metadata: { labels: { app: analyst, team: data } }
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
  it("the agent container sees neither the upstream Secret, the service-account token, nor the sidecar", async () => {
    const r = await inAgent(agentPod, [
      "sh",
      "-c",
      // What the kubelet mounted into this container, what is at the sidecar's paths, and its
      // environment.
      "cat /proc/self/mountinfo; echo ---; for f in /var/run/secrets/kubernetes.io/serviceaccount/token /etc/airlock/secrets /etc/airlock /tmp/airlock/hash.key; do test -e $f && echo present $f; done; echo ---; env",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const [mounts = "", present = "", env = ""] = r.stdout.split("---\n");
    // The processes it can see (a command line of their own that names nothing of Airlock's).
    const all = ok(await inAgent(agentPod, ["sh", "-c", "cat /proc/[0-9]*/cmdline"]), "ps");
    // Secrets and projected tokens are tmpfs mounts from the kubelet's pod volume directory.
    expect(mounts).not.toMatch(/kubernetes\.io~(secret|projected)/);
    expect(mounts).toContain("/etc/hosts");
    expect(present.trim(), "files at the sidecar's paths").toBe("");
    expect(all).toContain("sleep");
    expect(all, "no sidecar process is visible").not.toMatch(/airlock|node/);
    expect(env).not.toContain(warehouse.password);
    expect(env).toContain(`PGHOST=${NODE_IP}`);
    // And the API server does not take the agent for the sidecar: the token is not there to send.
    const api = await inAgent(agentPod, [
      "sh",
      "-c",
      "cat /var/run/secrets/kubernetes.io/serviceaccount/token /etc/airlock/secrets/warehouse-analyst/password",
    ]);
    expect(api.code).not.toBe(0);
    expect(api.stderr).toMatch(/No such file or directory/);
  });

  it("an agent as the proxy UID is refused by the injector; as UID 0 it can neither become the proxy UID nor rewrite the network", async () => {
    const refused = await kubectl(["apply", "-f", "-"], {
      stdin: agentPodYaml("as-proxy", { runAsUser: 1717 }),
    });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("runs as UID 1717, the proxy UID, whose traffic is not captured");
    expect((await kubectl(["get", "pod", "-n", NS, "as-proxy"])).code, "no such pod was created").not.toBe(0);

    ok(
      await kubectl(["apply", "-f", "-"], { stdin: agentPodYaml("as-root", { runAsUser: 0 }) }),
      "as-root pod",
    );
    await waitReady("as-root");
    const apiPort = new URL(node.cluster.server).port;
    const root = (cmd: string) => inAgent("as-root", ["sh", "-c", cmd]);
    expect((await root("id -u")).stdout.trim()).toBe("0");
    // SETUID/SETGID are dropped: root cannot become the proxy UID, whose traffic goes out directly.
    for (const become of [
      `setpriv --reuid=1717 --regid=1717 --clear-groups curl -sS -m 5 --noproxy '*' -k https://${NODE_IP}:${apiPort}/version`,
      "node -e 'process.setgid(1717); process.setuid(1717)'",
    ]) {
      const r = await root(become);
      expect(r.code, `${become}: ${r.stdout}`).not.toBe(0);
      expect(r.stderr, become).toMatch(/not permitted|EPERM/);
    }
    // NET_ADMIN/NET_RAW are dropped: no new routes, addresses or raw sockets.
    for (const net of ["ip route add 192.0.2.0/24 dev eth0", "ip addr add 192.0.2.7/32 dev eth0"]) {
      const r = await root(net);
      expect(r.code, net).not.toBe(0);
      expect(r.stderr, net).toMatch(/not permitted/);
    }
    // Root's own traffic is captured like anyone's: around the sidecar it fails, through it it is masked.
    const direct = await root(`curl -sS -m 5 --noproxy '*' -k https://${NODE_IP}:${apiPort}/version`);
    expect(direct.code, direct.stdout).not.toBe(0);
    const masked = await root(`curl -sS -m 10 --noproxy '*' http://${NODE_IP}:${tickets.port}/tickets`);
    expect(masked.code, masked.stderr).toBe(0);
    expect(masked.stdout).toContain("printer on fire");
    expect(masked.stdout).not.toContain("grace.hopper@example.com");
  });

  it("a Job with the injected sidecar completes: its agent exits, then the sidecar, and the pod Succeeds", async () => {
    ok(
      await kubectl(["apply", "-f", "-"], {
        stdin: `
apiVersion: batch/v1
kind: Job
metadata: { name: report, namespace: ${NS} }
spec:
  backoffLimit: 0
  activeDeadlineSeconds: 150
  template:
    metadata: { labels: { team: data } }
    spec:
      restartPolicy: Never
      containers:
        - name: agent
          image: ${AGENT_IMAGE}
          imagePullPolicy: Never
          command: [psql, -XAt, -c, "select 'customers', count(*) from customers"]${agentEnv()}
`,
      }),
      "job",
    );
    const condition = await poll(
      "the Job finished",
      async () => {
        const r = await kubectl(["get", "job", "-n", NS, "report", "-o", "json"]);
        const job = JSON.parse(r.stdout) as { status?: { conditions?: { type: string; status: string }[] } };
        return job.status?.conditions?.find(
          (c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True",
        )?.type;
      },
      150_000,
      async () => (await kubectl(["describe", "job", "-n", NS, "report"])).stdout,
    );
    const pods = JSON.parse(
      ok(await kubectl(["get", "pods", "-n", NS, "-l", "job-name=report", "-o", "json"]), "job pods"),
    ) as { items: PodStatus[] };
    const p = pods.items[0];
    expect(p, "the Job's pod").toBeDefined();
    const name = p?.metadata.name ?? "";
    expect(condition, await describePod(name)).toBe("Complete");
    expect(p?.status.phase).toBe("Succeeded");
    const sidecar = p?.status.initContainerStatuses?.find((c) => c.name === "airlock-sidecar");
    expect(sidecar?.state.terminated, "the sidecar was stopped after the agent").toBeDefined();
    expect(ok(await kubectl(["logs", "-n", NS, name, "-c", "agent"]), "job logs").trim()).toMatch(
      /^customers\|\d+$/,
    );
  });

  it("`kubectl delete pod` drains: the in-flight statement completes and the audit stream has one event per operation", async () => {
    // The agent runs statements back to back; on SIGTERM it finishes the one in flight and exits.
    const script =
      "trap 'echo stopping; exit 0' TERM; i=0; while true; do i=$((i+1)); psql -XAt -c \"select $i, count(*) from generate_series(1, 300000)\" || echo failed $i; done";
    ok(
      await kubectl(["apply", "-f", "-"], { stdin: agentPodYaml("drainer", { script, grace: 30 }) }),
      "drainer",
    );
    await waitReady("drainer");
    const follow = (container: string) => {
      const child = spawn(node.cluster.kubectlPath, ["logs", "-f", "-n", NS, "drainer", "-c", container], {
        env: { ...process.env, KUBECONFIG: node.cluster.kubeconfigPath },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let text = "";
      child.stdout?.setEncoding("utf8").on("data", (d: string) => {
        text += d;
      });
      const ended = new Promise<string>((resolve) => child.on("close", () => resolve(text)));
      return { child, ended, now: () => text };
    };
    const agentLog = follow("agent");
    const sidecarLog = follow("airlock-sidecar");
    try {
      await poll(
        "a few statements through the sidecar",
        async () => ((agentLog.now().match(/^\d+\|300000$/gm)?.length ?? 0) >= 3 ? true : undefined),
        60_000,
        async () => `agent:\n${agentLog.now().slice(-1500)}\nsidecar:\n${sidecarLog.now().slice(-1500)}`,
      );
      const del = await kubectl(["delete", "pod", "-n", NS, "drainer", "--wait=true", "--timeout=90s"], {
        timeoutMs: 100_000,
      });
      expect(del.code, del.stderr).toBe(0);
      const [agentText, sidecarText] = await Promise.all([agentLog.ended, sidecarLog.ended]);
      const done = agentText.match(/^\d+\|300000$/gm) ?? [];
      expect(agentText, "no statement failed while the pod stopped").not.toMatch(/failed/);
      expect(agentText).toContain("stopping");
      const events = sidecarText
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { audit?: boolean; event?: string; protocol?: string; msg?: string })
        .filter((e) => e.audit && e.event === "operation" && e.protocol === "postgres");
      expect(
        events.length,
        `audit events vs statements the agent saw complete\n${sidecarText.slice(-3000)}`,
      ).toBe(done.length);
      // The preStop hook (`airlock-sidecar drain`) drained first; the kubelet's SIGTERM came after
      // it returned and found the drain done. A plain SIGTERM would log trigger SIGTERM first.
      const lines = sidecarText
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { msg?: string; trigger?: string });
      const drainLines = lines.filter((l) => l.trigger !== undefined).map((l) => `${l.trigger}: ${l.msg}`);
      expect(drainLines, sidecarText.slice(-3000)).toEqual([
        "preStop: draining: no new connections; waiting for in-flight operations",
        "SIGTERM: drain already under way or done",
      ]);
      process.stderr.write(
        `[node] drain: ${done.length} statements completed, ${events.length} audit events\n`,
      );
    } finally {
      agentLog.child.kill();
      sidecarLog.child.kill();
    }
  });

  it("the policy controller's status and Events are visible with kubectl get", async () => {
    const table = ok(await kubectl(["get", "aap", "-n", NS]), "get aap");
    expect(table).toMatch(/^NAME\s+CONNECTIONS\s+RULES\s+READY/);
    expect(table).toMatch(/^analyst\s+\S*warehouse\S*\s+3\s+True/m);
    // A policy naming a Secret that does not exist: Ready False with the reason, and a Warning Event.
    ok(
      await kubectl(["apply", "-f", "-"], {
        stdin: `
apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: missing-secret, namespace: ${NS} }
spec:
  podSelector: { matchLabels: { team: nobody } }
  connections:
    - name: other
      protocol: postgres
      target: { host: "${NODE_IP}", port: ${warehouse.pg.port} }
      credentials: { secretRef: { name: no-such-secret } }
  rules:
    - { name: read, action: allow, match: { sql: { statements: [read] } } }
`,
      }),
      "missing-secret policy",
    );
    const reason = await poll("missing-secret not Ready", async () => {
      const r = await kubectl([
        "get",
        "aap",
        "-n",
        NS,
        "missing-secret",
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].reason}',
      ]);
      return r.stdout.startsWith("False ") ? r.stdout.split(" ")[1] : undefined;
    });
    expect(reason).toBe("SecretNotFound");
    const events = await poll("Events on both policies", async () => {
      const r = await kubectl([
        "get",
        "events",
        "-n",
        NS,
        "--field-selector",
        "involvedObject.kind=AgentAccessPolicy",
        "-o",
        "custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message",
      ]);
      return /Warning\s+SecretNotFound\s+missing-secret\s+.*no-such-secret/.test(r.stdout) &&
        /Normal\s+\S+\s+analyst\s/.test(r.stdout)
        ? r.stdout
        : undefined;
    });
    expect(events).toMatch(/Warning\s+SecretNotFound\s+missing-secret/);
    ok(await kubectl(["delete", "aap", "-n", NS, "missing-secret"]), "delete missing-secret");
  });
  it("the agent pod's sidecar was never restarted, and its peak memory stayed well under its limit", async () => {
    const p = await pod(agentPod);
    const sidecar = p.status.initContainerStatuses?.find((c) => c.name === "airlock-sidecar");
    expect(sidecar?.lastState?.terminated?.reason, "the sidecar's last termination").toBeUndefined();
    expect(sidecar?.restartCount).toBe(0);
    // PID 1 of the sidecar container is its Node process; VmHWM is its peak RSS since start, after
    // every guarded session above (the first one's catalog load used to peak at ~1 GB).
    const status = ok(
      await kubectl(["exec", "-n", NS, agentPod, "-c", "airlock-sidecar", "--", "cat", "/proc/1/status"]),
      "sidecar /proc/1/status",
    );
    const peakMb = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
    process.stderr.write(`[node] sidecar peak RSS ${peakMb.toFixed(0)} MB\n`);
    expect(peakMb).toBeGreaterThan(50);
    expect(peakMb, "peak RSS (MB) against the 512Mi limit").toBeLessThan(320);
  });
});
