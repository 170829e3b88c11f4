// One real Kubernetes node next to a real control plane, with no container engine and no registry:
// containerd (Debian's 1.6, local image store) + runc, the kubelet registered as a node, a bridge CNI
// network whose pods have no route off the machine, kube-scheduler, kube-controller-manager and
// kube-proxy (iptables), all built from the same k8s.io/kubernetes module as the API server
// (test/envtest/build-control-plane.sh --node). Images come from build-images.sh.
//
// Host-wide things it touches, and undoes in stop(): the bridge `airlock0` (10.244.0.1/24), the
// kube-proxy iptables chains (`kube-proxy --cleanup`), the kubelet's cgroups under `kubepods`.
// Only one node runs per machine at a time (a lock file; a second start waits for it).
import { execFile, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stringify } from "yaml";
import {
  type ControlPlane,
  ensureBinaries,
  kubeconfigYaml,
  type Managed,
  spawnServer,
  startControlPlane,
  stopProcess,
  tail,
} from "../envtest/control-plane.ts";
import { issueClientCert, loadCA } from "../envtest/pki.ts";

const execFileP = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "../..");

export const NODE_NAME = "airlock-node";
export const BRIDGE = "airlock0";
/** The node's address: the bridge's own IP, which pods reach directly (the API server binds here). */
export const NODE_IP = "10.244.0.1";
export const POD_CIDR = "10.244.0.0/24";
export const SERVICE_CIDR = "10.0.0.0/24";
/** The `kubernetes` Service's ClusterIP (first address of the service range). */
export const KUBERNETES_SERVICE_IP = "10.0.0.1";
const CACHE =
  process.env.AIRLOCK_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "airlock");
const LOCK = "/run/airlock-node.lock";

export interface NodeVersions {
  kubernetes: string;
  containerd: string;
  runc: string;
  cni: string;
}

export interface RunningNode {
  readonly cluster: ControlPlane;
  readonly versions: NodeVersions;
  /** Milliseconds: control plane ready, node Ready, images imported. */
  readonly timings: Record<string, number>;
  readonly workDir: string;
  /** `ctr` against the node's containerd (namespace k8s.io). */
  ctr(args: readonly string[]): Promise<string>;
  /** Tails of the node's logs (kubelet, containerd, …) for a failure message. */
  diagnostics(): Promise<string>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function which(cmd: string): string | undefined {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/**
 * Why a node cannot start on this machine, or undefined if it can. Checked before building
 * anything, so that a skip says exactly what is missing.
 */
export function nodeProblem(): string | undefined {
  if (process.platform !== "linux") return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return "not root (containerd, runc and the kubelet need root)";
  for (const [cmd, pkg] of [
    ["containerd", "containerd"],
    ["containerd-shim-runc-v2", "containerd"],
    ["runc", "runc"],
    ["ctr", "containerd"],
    ["umoci", "umoci"],
    ["debootstrap", "debootstrap"],
    ["iptables", "iptables"],
    ["ip", "iproute2"],
    ["gcc", "gcc"],
  ] as const) {
    if (!which(cmd)) return `${cmd} not found (apt-get install ${pkg})`;
  }
  for (const plugin of ["bridge", "host-local", "loopback"]) {
    if (!existsSync(`/usr/lib/cni/${plugin}`))
      return `CNI plugin /usr/lib/cni/${plugin} missing (apt-get install containernetworking-plugins)`;
  }
  if (!existsSync("/sys/fs/cgroup/memory") && !existsSync("/sys/fs/cgroup/cgroup.controllers"))
    return "no cgroup hierarchy with a memory controller under /sys/fs/cgroup";
  const ipOk = spawnSync("ip", ["link", "show"], { encoding: "utf8" });
  if (ipOk.status !== 0) return `cannot list network links (${ipOk.stderr.trim()})`;
  return undefined;
}

async function run(cmd: string, args: readonly string[], timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, [...args], { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${e.message}\n${e.stderr ?? ""}`);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** One node per machine: the bridge, kube-proxy's chains and port 10250 are host-wide. */
async function acquireLock(log: (l: string) => void): Promise<void> {
  const deadline = Date.now() + 20 * 60_000;
  for (let waited = false; ; ) {
    try {
      writeFileSync(LOCK, `${process.pid}\n`, { flag: "wx" });
      return;
    } catch {
      const owner = Number.parseInt(readFileSync(LOCK, "utf8"), 10);
      if (!(owner > 0) || !pidAlive(owner)) {
        rmSync(LOCK, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new Error(`another node (pid ${owner}) holds ${LOCK} for over 20 minutes`);
      if (!waited) log(`waiting for the node of pid ${owner} to stop (${LOCK})`);
      waited = true;
      await sleep(2000);
    }
  }
}

function releaseLock(): void {
  try {
    if (Number.parseInt(readFileSync(LOCK, "utf8"), 10) === process.pid) rmSync(LOCK, { force: true });
  } catch {
    // gone already
  }
}

/** The bridge pods attach to, with the node's IP: created before the API server binds to it. */
async function ensureBridge(): Promise<void> {
  const exists = spawnSync("ip", ["link", "show", BRIDGE]).status === 0;
  if (!exists) await run("ip", ["link", "add", BRIDGE, "type", "bridge"]);
  const addrs = await run("ip", ["-4", "-o", "addr", "show", "dev", BRIDGE]);
  if (!addrs.includes(`${NODE_IP}/24`)) await run("ip", ["addr", "add", `${NODE_IP}/24`, "dev", BRIDGE]);
  await run("ip", ["link", "set", BRIDGE, "up"]);
}

async function removeBridge(): Promise<void> {
  // Pods' veths go with their network namespaces; the bridge itself is ours.
  spawnSync("ip", ["link", "del", BRIDGE]);
}

/** The kubelet bind-mounts its root dir and pod volumes; they must go before the work dir can. */
function unmountUnderSync(dir: string): void {
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync("umount", ["-l", m]);
}

function cniConfig(ipamDir: string): string {
  // No default route in pods: the pod subnet and the service range are all a pod can reach, so
  // nothing leaves the machine. No masquerade: sources stay pod IPs (what policies see).
  return JSON.stringify(
    {
      cniVersion: "0.4.0",
      name: "airlock-node",
      plugins: [
        {
          type: "bridge",
          bridge: BRIDGE,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            // per run: an earlier run's leases must not outlive its pods
            dataDir: ipamDir,
            ranges: [[{ subnet: POD_CIDR, gateway: NODE_IP }]],
            routes: [{ dst: SERVICE_CIDR, gw: NODE_IP }],
          },
        },
        { type: "loopback" },
      ],
    },
    null,
    2,
  );
}

function containerdConfig(work: string, root: string): string {
  // Debian's containerd 1.6: config version 2. The image store persists across runs (root); the
  // state (tasks, sockets) is per run.
  return `version = 2
root = "${root}"
state = "${join(work, "containerd-state")}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${join(work, "containerd.sock")}"
[ttrpc]
  address = "${join(work, "containerd.ttrpc.sock")}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # root here lacks CAP_SYS_RESOURCE, so runc cannot lower a container's oom_score_adj below its
  # own (the kubelet asks -998 for sandboxes): keep them no lower than containerd's.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${join(work, "cni")}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
`;
}

function kubeletConfig(work: string, sock: string, caPath: string): string {
  return stringify({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    // Kubernetes 1.35 refuses cgroup v1 by default; this machine has only v1 controllers.
    failCgroupV1: false,
    // containerd 1.6 does not report its cgroup driver (CRI RuntimeConfig); the kubelet then uses
    // this one (the fallback 1.35 still has).
    cgroupDriver: "cgroupfs",
    containerRuntimeEndpoint: `unix://${sock}`,
    address: NODE_IP,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort: 0,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: false },
      x509: { clientCAFile: caPath },
    },
    authorization: { mode: "AlwaysAllow" },
    clusterDomain: "cluster.local",
    failSwapOn: false,
    // A test node on a shared disk: never evict or garbage-collect images mid-run.
    evictionHard: { "memory.available": "1Mi", "nodefs.available": "0%", "imagefs.available": "0%" },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    serializeImagePulls: false,
    resolvConf: join(work, "resolv.conf"),
    maxPods: 30,
    podPidsLimit: 4096,
    nodeStatusUpdateFrequency: "4s",
    syncFrequency: "10s",
    fileCheckFrequency: "10s",
    staticPodPath: "",
    rotateCertificates: false,
    serverTLSBootstrap: false,
    shutdownGracePeriod: "0s",
    logging: { verbosity: 1 },
  });
}

function kubeProxyConfig(kubeconfig: string): string {
  return stringify({
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    mode: "iptables",
    clientConnection: { kubeconfig },
    hostnameOverride: NODE_NAME,
    clusterCIDR: POD_CIDR,
    bindAddress: NODE_IP,
    healthzBindAddress: "127.0.0.1:10256",
    metricsBindAddress: "127.0.0.1:10249",
    // Leave the host's conntrack sysctls and route_localnet alone: node ports only on the bridge.
    conntrack: { maxPerCore: 0, min: 0 },
    nodePortAddresses: [`${NODE_IP}/32`],
    iptables: { localhostNodePorts: false, syncPeriod: "10s", minSyncPeriod: "0s" },
  });
}

async function firstLine(cmd: string, args: readonly string[]): Promise<string> {
  try {
    return (await run(cmd, args, 10_000)).trim().split("\n")[0] ?? "unknown";
  } catch {
    return "unknown";
  }
}

/** Builds what is missing (node binaries, images), then starts the control plane and the node. */
export async function startNode(
  log: (line: string) => void = (l) => process.stderr.write(`[node] ${l}\n`),
): Promise<RunningNode> {
  const timings: Record<string, number> = {};
  const t0 = performance.now();
  const mark = (what: string) => {
    timings[what] = Math.round(performance.now() - t0);
    log(`${what} (${(timings[what] / 1000).toFixed(1)} s)`);
  };

  await run("bash", [join(ROOT, "test/envtest/build-control-plane.sh"), "--node"], 60 * 60_000);
  const binDir = await ensureBinaries(log);
  mark("binaries");
  const imagesOut = join(CACHE, "node-images", "out");
  await run("bash", [join(HERE, "build-images.sh"), "--out", imagesOut], 60 * 60_000);
  mark("images built");

  await acquireLock(log);
  // Its own work dir (not the control plane's): the kubelet's mounts must go before it can.
  const work = await mkdtemp(join(tmpdir(), "airlock-node-"));
  const keep = process.env.AIRLOCK_KEEP_ENVTEST === "1";
  process.on("exit", () => {
    unmountUnderSync(work);
    if (!keep) rmSync(work, { recursive: true, force: true });
    releaseLock();
  });
  const processes: Managed[] = [];
  let cluster: ControlPlane | undefined;
  let proxyConfigPath = "";
  let drain: (() => Promise<void>) | undefined;
  const stop = async () => {
    await drain?.().catch((err: Error) => log(`draining pods: ${err.message}`));
    for (const p of processes.reverse()) await stopProcess(p, 10_000);
    if (proxyConfigPath) spawnSync(join(binDir, "kube-proxy"), ["--cleanup", `--config=${proxyConfigPath}`]);
    unmountUnderSync(work);
    if (!keep) await rm(work, { recursive: true, force: true });
    await removeBridge();
    await cluster?.stop();
    releaseLock();
  };
  try {
    await ensureBridge();
    cluster = await startControlPlane({
      binDir,
      bindAddress: NODE_IP,
      withNode: true,
      servingHosts: [KUBERNETES_SERVICE_IP, "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
      extraApiServerArgs: (pki) => [
        `--advertise-address=${NODE_IP}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        `--kubelet-client-certificate=${pki.admin.certPath}`,
        `--kubelet-client-key=${pki.admin.keyPath}`,
        "--kubelet-preferred-address-types=InternalIP",
        "--endpoint-reconciler-type=lease",
      ],
      log,
    });
    mark("control plane ready");
    await mkdir(join(work, "cni"), { recursive: true });
    await writeFile(join(work, "cni", "10-airlock-node.conflist"), cniConfig(join(work, "cni-ipam")));
    // Pods get no DNS server (there is none); names they need come from hostAliases.
    await writeFile(join(work, "resolv.conf"), "options ndots:1\n");
    const pkiDir = cluster.info.pkiDir;
    const ca = await loadCA(pkiDir);
    const caPath = join(pkiDir, "ca.crt");
    const kubeconfigFor = async (user: string, groups: string[]) => {
      const cert = await issueClientCert(ca, user, groups);
      const path = join(work, `${user.replace(/[^a-z0-9-]/gi, "_")}.kubeconfig`);
      await writeFile(path, kubeconfigYaml(cluster?.server ?? "", ca.certPem, user, cert), { mode: 0o600 });
      return path;
    };

    // containerd
    const sock = join(work, "containerd.sock");
    const containerdRoot = join(CACHE, "node", "containerd-root");
    await mkdir(containerdRoot, { recursive: true });
    await writeFile(join(work, "containerd.toml"), containerdConfig(work, containerdRoot));
    const containerd = spawnServer(
      "containerd",
      which("containerd") ?? "containerd",
      ["--config", join(work, "containerd.toml")],
      join(work, "containerd.log"),
    );
    processes.push(containerd);
    const ctr = (args: readonly string[]) =>
      run("ctr", ["--address", sock, "--namespace", "k8s.io", ...args], 600_000);
    for (let i = 0; ; i++) {
      if (containerd.child.exitCode !== null)
        throw new Error(`containerd exited:\n${await tail(containerd.logPath)}`);
      try {
        await ctr(["version"]);
        break;
      } catch (err) {
        if (i > 100) throw err;
        await sleep(200);
      }
    }
    // Containers left by an earlier run's kubelet (the store persists; their tasks do not).
    const stale = (await ctr(["containers", "list", "--quiet"])).split("\n").filter(Boolean);
    if (stale.length) await ctr(["containers", "delete", ...stale]).catch(() => "");
    mark("containerd ready");

    // images: imported by digest (unchanged layers are not stored twice)
    const refs = readFileSync(join(imagesOut, "refs.tsv"), "utf8")
      .trim()
      .split("\n")
      .map((l) => l.split("\t") as [string, string]);
    for (const [file, ref] of refs) {
      const base = ref.slice(0, ref.lastIndexOf(":"));
      await ctr(["images", "import", "--no-unpack", "--base-name", base, join(imagesOut, file)]);
      await ctr(["images", "check", `name==${ref}`]);
    }
    mark("images imported");

    // kubelet
    const kubeletKubeconfig = await kubeconfigFor(`system:node:${NODE_NAME}`, ["system:nodes"]);
    await writeFile(join(work, "kubelet.yaml"), kubeletConfig(work, sock, caPath));
    const kubelet = spawnServer(
      "kubelet",
      join(binDir, "kubelet"),
      [
        `--config=${join(work, "kubelet.yaml")}`,
        `--kubeconfig=${kubeletKubeconfig}`,
        `--hostname-override=${NODE_NAME}`,
        `--node-ip=${NODE_IP}`,
        `--root-dir=${join(work, "kubelet")}`,
        `--cert-dir=${join(work, "kubelet-pki")}`,
      ],
      join(work, "kubelet.log"),
    );
    processes.push(kubelet);

    const schedulerKubeconfig = await kubeconfigFor("system:kube-scheduler", []);
    processes.push(
      spawnServer(
        "kube-scheduler",
        join(binDir, "kube-scheduler"),
        [`--kubeconfig=${schedulerKubeconfig}`, "--leader-elect=false", "--secure-port=0"],
        join(work, "kube-scheduler.log"),
      ),
    );
    const kcmKubeconfig = await kubeconfigFor("system:kube-controller-manager", []);
    processes.push(
      spawnServer(
        "kube-controller-manager",
        join(binDir, "kube-controller-manager"),
        [
          `--kubeconfig=${kcmKubeconfig}`,
          "--leader-elect=false",
          "--secure-port=0",
          `--root-ca-file=${caPath}`,
          // one service account per controller, each with its bootstrap role (as kubeadm runs it)
          "--use-service-account-credentials=true",
          `--service-account-private-key-file=${join(pkiDir, "sa.key")}`,
          `--service-cluster-ip-range=${SERVICE_CIDR}`,
        ],
        join(work, "kube-controller-manager.log"),
      ),
    );
    const proxyKubeconfig = await kubeconfigFor("system:kube-proxy", []);
    proxyConfigPath = join(work, "kube-proxy.yaml");
    await writeFile(proxyConfigPath, kubeProxyConfig(proxyKubeconfig));
    processes.push(
      spawnServer(
        "kube-proxy",
        join(binDir, "kube-proxy"),
        [`--config=${proxyConfigPath}`],
        join(work, "kube-proxy.log"),
      ),
    );

    const diagnostics = async () => {
      const parts: string[] = [];
      for (const p of processes) parts.push(`--- ${p.name} (${p.logPath}) ---\n${await tail(p.logPath, 25)}`);
      return parts.join("\n");
    };

    // Ready: the node reports Ready (runtime + CNI up) and the default ServiceAccount exists.
    const deadline = Date.now() + 180_000;
    for (;;) {
      for (const p of processes)
        if (p.child.exitCode !== null)
          throw new Error(`${p.name} exited (${p.child.exitCode})\n${await tail(p.logPath, 40)}`);
      const r = await cluster.kubectl([
        "get",
        "node",
        NODE_NAME,
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ]);
      const sa = await cluster.kubectl(["get", "serviceaccount", "default", "-n", "default", "-o", "name"]);
      if (r.stdout.trim() === "True" && sa.code === 0) break;
      if (Date.now() > deadline)
        throw new Error(`node ${NODE_NAME} not Ready after 180 s\n${await diagnostics()}`);
      await sleep(500);
    }
    mark("node ready");

    const controlPlane = cluster;
    const binVersion = await firstLine(join(binDir, "kubelet"), ["--version"]);
    const versions: NodeVersions = {
      kubernetes: binVersion.replace(/^Kubernetes /, ""),
      containerd: (await firstLine("containerd", ["--version"])).split(" ")[2] ?? "unknown",
      runc: (await firstLine("runc", ["--version"])).replace(/^runc version /, ""),
      cni: (await firstLine("dpkg-query", ["-W", "containernetworking-plugins"])).split("\t")[1] ?? "unknown",
    };
    log(
      `node ${NODE_NAME} Ready: kubelet ${versions.kubernetes}, containerd ${versions.containerd}, runc ${versions.runc}, ` +
        `CNI plugins ${versions.cni}; ${Object.entries(timings)
          .map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`)
          .join(", ")}`,
    );
    // Before stopping: pods deleted through the API so the kubelet tears their sandboxes down
    // (CNI DEL, network namespaces); what is left after 60 s is killed through containerd.
    drain = async () => {
      // Controllers first, or they replace the pods being deleted and the wait below runs out.
      await controlPlane.kubectl([
        "delete",
        "deployments,replicasets,statefulsets,daemonsets,jobs",
        "--all",
        "--all-namespaces",
        "--wait=false",
        "--cascade=orphan",
      ]);
      await controlPlane.kubectl([
        "delete",
        "pods",
        "--all",
        "--all-namespaces",
        "--wait=false",
        "--grace-period=1",
      ]);
      const until = Date.now() + 60_000;
      while (Date.now() < until) {
        const left = (await ctr(["tasks", "list", "--quiet"])).split("\n").filter(Boolean);
        if (!left.length) return;
        await sleep(1000);
      }
      for (const id of (await ctr(["tasks", "list", "--quiet"])).split("\n").filter(Boolean)) {
        await ctr(["tasks", "kill", "--signal", "SIGKILL", id]).catch(() => "");
        await ctr(["tasks", "delete", "--force", id]).catch(() => "");
      }
    };
    let stopped: Promise<void> | undefined;
    return {
      cluster: controlPlane,
      versions,
      timings,
      workDir: work,
      ctr,
      diagnostics,
      stop: () => {
        stopped ??= stop();
        return stopped;
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
