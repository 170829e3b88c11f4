// Shared set-up for the approvals suites on the real API server: the CRDs, the admission policy and
// the roles from crds/, an agent service account with a real token, approver users with client
// certificates, and helpers to run the real `kubectl-airlock` plugin as one of them.

import { spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { expect } from "vitest";
import {
  type AccessRequest,
  type AgentAccessPolicy,
  type AgentAccessPolicySpec,
  API_VERSION,
  GROUP,
  VERSION,
} from "../../api/src/index.ts";
import type { Envtest, User } from "../envtest/connect.ts";
import { relay as sharedRelay } from "../harness/relay.ts";
import { applyCrds } from "../injector/harness.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface Cluster {
  ns: string;
  /** The agent pod's service account, with a real (TokenRequest) token. */
  agentKubeConfig(server?: string): KubeConfig;
  agentSubject: string;
  users: { sam: User; ann: User; bob: User; eve: User };
  /** Admin client. */
  custom: CustomObjectsApi;
  list(): Promise<AccessRequest[]>;
  get(name: string): Promise<AccessRequest>;
  /** A pod-info directory as the downward API would mount it. */
  podInfo(podName: string): Promise<string>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` every 100 ms until it returns something truthy, and returns that. */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** An AgentAccessPolicy `name` in the cluster's namespace selecting the pods labelled app=agent. */
export const agentPolicy = (c: Cluster, name: string, spec: AgentAccessPolicySpec): AgentAccessPolicy => ({
  apiVersion: API_VERSION,
  kind: "AgentAccessPolicy",
  metadata: { name, namespace: c.ns },
  spec: { podSelector: { matchLabels: { app: "agent" } }, ...spec },
});

async function poll(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

export async function setUpCluster(k8s: Envtest, prefix: string): Promise<Cluster> {
  await applyCrds(k8s);
  await k8s.kubectl(["api-resources", "--cached=false", `--api-group=${GROUP}`]);
  const ns = await k8s.createNamespace(prefix);
  const run = async (args: string[], stdin?: string) => {
    const r = await k8s.kubectl(args, stdin === undefined ? {} : { stdin });
    expect(r.code, `kubectl ${args.join(" ")}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  await run(["create", "serviceaccount", "agent", "-n", ns]);
  const agentSubject = `system:serviceaccount:${ns}:agent`;
  await run([
    "create",
    "rolebinding",
    "airlock-sidecar",
    "-n",
    ns,
    "--clusterrole=airlock-sidecar",
    `--serviceaccount=${ns}:agent`,
  ]);
  await run([
    "create",
    "clusterrolebinding",
    `airlock-sidecar-cluster-${ns}`,
    "--clusterrole=airlock-sidecar-cluster",
    `--serviceaccount=${ns}:agent`,
  ]);
  // Everyone here may write status (RBAC), so that it is the admission policy that refuses them.
  await run([
    "create",
    "rolebinding",
    "airlock-approvers",
    "-n",
    ns,
    "--clusterrole=airlock-approver",
    "--group=dba",
    "--group=support",
    "--group=sales",
  ]);
  const token = (await run(["create", "token", "agent", "-n", ns, "--duration=2h"])).trim();
  const [sam, ann, bob, eve] = await Promise.all([
    k8s.createUser("sam", ["support"]),
    k8s.createUser("ann", ["dba"]),
    k8s.createUser("bob", ["dba"]),
    k8s.createUser("eve", ["sales"]),
  ]);

  const agentKubeConfig = (server = k8s.server) => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        { name: "envtest", server, caData: Buffer.from(k8s.caPem).toString("base64"), skipTLSVerify: false },
      ],
      users: [{ name: "agent", token }],
      contexts: [{ name: "agent", cluster: "envtest", user: "agent", namespace: ns }],
      currentContext: "agent",
    });
    return kc;
  };

  await poll("RBAC for the agent and the approvers", async () => {
    const a = await k8s.kubectl([
      "auth",
      "can-i",
      "create",
      `accessrequests.${GROUP}`,
      "-n",
      ns,
      "--as",
      agentSubject,
    ]);
    const b = await k8s.kubectl(
      ["auth", "can-i", "update", `accessrequests.${GROUP}`, "--subresource=status", "-n", ns],
      {
        user: eve,
      },
    );
    return a.stdout.trim() === "yes" && b.stdout.trim() === "yes";
  });

  // The admission policy takes effect a moment after it is created: probe with a decision it must
  // refuse (eve is not an approver) on fresh objects until it does.
  let probe = 0;
  await poll("the AccessRequest admission policy to take effect", async () => {
    const name = `vap-probe-${probe++}`;
    await run(["create", "-f", "-"], JSON.stringify(probeRequest(ns, name)));
    const r = await k8s.kubectl(
      [
        "patch",
        "areq",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        JSON.stringify({ status: { approvals: [{ user: "eve", time: new Date().toISOString() }] } }),
      ],
      { user: eve },
    );
    return r.code !== 0 && /ValidatingAdmissionPolicy/.test(r.stderr);
  });

  const custom = k8s.kubeConfig.makeApiClient(CustomObjectsApi);
  const base = { group: GROUP, version: VERSION, plural: "accessrequests", namespace: ns };
  return {
    ns,
    agentKubeConfig,
    agentSubject,
    users: { sam, ann, bob, eve },
    custom,
    async list() {
      const res = (await custom.listNamespacedCustomObject({
        ...base,
        labelSelector: "app.kubernetes.io/managed-by=airlock-sidecar",
      })) as { items: AccessRequest[] };
      return res.items;
    },
    async get(name) {
      return (await custom.getNamespacedCustomObject({ ...base, name })) as AccessRequest;
    },
    async podInfo(podName) {
      const dir = await mkdtemp(join(tmpdir(), "airlock-podinfo-"));
      await writeFile(join(dir, "namespace"), ns);
      await writeFile(join(dir, "pod_name"), podName);
      await writeFile(join(dir, "service_account"), "agent");
      await writeFile(join(dir, "labels"), 'app="agent"\n');
      return dir;
    },
  };
}

function probeRequest(ns: string, name: string) {
  return {
    apiVersion: API_VERSION,
    kind: "AccessRequest",
    metadata: { name, namespace: ns },
    spec: {
      policy: "probe",
      rule: "probe",
      connection: "probe",
      requester: { user: "sam", serviceAccount: `system:serviceaccount:${ns}:agent`, pod: "probe" },
      operation: { protocol: "http", summary: "probe" },
      approvers: { groups: ["dba"] },
      minApprovals: 1,
      expiresAt: new Date(Date.now() + 600_000).toISOString(),
    },
  };
}

export interface PluginResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real plugin executable (`node bin/kubectl-airlock.js ...`) as `user`. */
export function plugin(args: readonly string[], user?: { kubeconfigPath: string }): Promise<PluginResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(ROOT, "bin/kubectl-airlock.js"), ...args, ...(user ? ["--kubeconfig", user.kubeconfigPath] : [])],
      { cwd: ROOT, env: { ...process.env, KUBECONFIG: "/nonexistent" } },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/** Appends a decision as `user` with kubectl directly (bypassing the plugin's own checks). */
export function rawDecision(
  k8s: Envtest,
  ns: string,
  obj: AccessRequest,
  kind: "approvals" | "denials",
  entry: { user: string; comment?: string; reason?: string },
  user?: { kubeconfigPath: string },
) {
  const list = [
    ...((obj.status?.[kind] as { user: string }[] | undefined) ?? []),
    { time: new Date().toISOString(), ...entry },
  ];
  return k8s.kubectl(
    [
      "patch",
      "areq",
      obj.metadata.name as string,
      "-n",
      ns,
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status: { [kind]: list } }),
    ],
    user ? { user } : {},
  );
}

/** A TCP relay to the API server that can be cut, to simulate an outage. */
export async function relay(target: URL) {
  const r = sharedRelay(target);
  const port = await r.up();
  return { url: `https://127.0.0.1:${port}`, cut: () => r.down() };
}
