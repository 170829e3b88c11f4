// An agent pod in network namespaces, as the injector builds it, for the TLS tests: airlock-init's
// rules in an "agent" namespace (no route out), the real sidecar (airlock-sidecar.ts) as UID 1717
// with its Secrets (owner-only), policy file and trust volume, and in the "upstream" namespace the
// public HTTPS services (tls-upstream.ts) with a certificate from a CA only the sidecar is given.
// Agent programs run as UID/GID 1000 with exactly the environment the injector gives a container.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { PROXY_ENV, TRUST_ENV } from "../../injector/src/inject.ts";
import { JAVA_TRUST_OPTIONS, JAVA_TRUSTSTORE_PATH } from "../../injector/src/names.ts";
import { ensureApproverCredential } from "../../sidecar/src/approvals/credentials.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import { type CertificateAuthority, createCA, type IssuedCert, issueServingCert } from "../envtest/pki.ts";
import type { StandinScript } from "./messages-standin.ts";
import {
  createTopology,
  type RunResult,
  reapStale,
  type Service,
  startService,
  type Topology,
} from "./netns.ts";
import { ANTHROPIC_HOST, EXAMPLE_HOST, PINNED_HOST } from "./tls-fixtures.ts";

const here = import.meta.dirname;
const INIT = join(here, "..", "..", "init", "bin", "airlock-init.js");
export const PROXY_UID = 1717;
export const AGENT_UID = 1000;

export type Mode = "captured" | "proxied";

export interface UpstreamRequest {
  host: string;
  method: string;
  url: string;
  authorization: string | null;
  /** The TLS server name the upstream was asked for. */
  servername: string | null;
  xApiKey: string | null;
  body: string;
}

export interface AgentPod {
  t: Topology;
  dir: string;
  /** The trust bundle the sidecar writes (what TRUST_ENV points at). */
  bundle: string;
  /** The upstream's own CA (PEM file), which no agent trusts. */
  upstreamCaFile: string;
  serving: IssuedCert;
  /** A Node binary UID 1000 can run (this machine's may live under /root). */
  nodeBin: string;
  /** A directory UID 1000 may put binaries in. */
  binDir: string;
  home: string;
  upstream: Service;
  sidecar: Service;
  /** The approver `ann`'s token for the sidecar's standalone approvals API. */
  approverToken: string;
  /** What the injector gives an agent container: the trust variables (JAVA_TOOL_OPTIONS too), the proxy ones when "proxied". */
  envFor(mode: Mode, extra?: Record<string, string>): Record<string, string>;
  /** Runs `command` in the agent namespace as UID/GID 1000 with exactly `env`. */
  asAgent(env: Record<string, string>, command: string, args: readonly string[]): Promise<RunResult>;
  audits(): AuditEvent[];
  requests(): UpstreamRequest[];
  /** The audit event of the next request the sidecar finishes for `connection` and `path`, after line `from`. */
  auditOf(connection: string, path: string, from: number): Promise<AuditEvent>;
  close(): Promise<void>;
}

export interface AgentPodOptions {
  policy: AgentAccessPolicy;
  backend: "nft" | "legacy";
  /** /etc/hosts of the agent namespace, from the topology's addresses. */
  hosts(t: Topology): Record<string, readonly string[]>;
  /** Secrets besides `upstream-ca` (ca.crt: the upstream's CA): [secret, key, value]. Read after beforeSidecar. */
  secrets: readonly (readonly [string, string, string])[];
  script?: StandinScript;
  /** Runs once the namespaces exist, before anything else starts (e.g. a database upstream). */
  beforeSidecar?(t: Topology): Promise<void>;
}

export async function startAgentPod(opts: AgentPodOptions): Promise<AgentPod> {
  reapStale();
  const t = createTopology();
  const dir = mkdtempSync("/tmp/airlock-netns-tls-");
  const services: Service[] = [];
  const close = async () => {
    for (const s of services.reverse()) await s.stop();
    t.cleanup();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    t.hosts(opts.hosts(t));
    await opts.beforeSidecar?.(t);
    chmodSync(dir, 0o755);
    const binDir = join(dir, "bin");
    mkdirSync(binDir);
    const nodeBin = join(binDir, "node");
    try {
      linkSync(process.execPath, nodeBin);
    } catch {
      copyFileSync(process.execPath, nodeBin);
      chmodSync(nodeBin, 0o755);
    }
    const home = join(dir, "home");
    mkdirSync(home);
    chownSync(home, AGENT_UID, AGENT_UID);

    const ca: CertificateAuthority = await createCA("airlock-netns-upstream-ca");
    const serving = await issueServingCert(ca, [EXAMPLE_HOST, ANTHROPIC_HOST, PINNED_HOST]);
    const upstreamCaFile = join(dir, "upstream-ca.pem");
    writeFileSync(upstreamCaFile, ca.certPem, { mode: 0o644 });

    // The sidecar container's files: Secrets (owner-only), its state, the trust volume it writes.
    const secrets = join(dir, "secrets");
    for (const [secret, key, value] of [["upstream-ca", "ca.crt", ca.certPem] as const, ...opts.secrets]) {
      mkdirSync(join(secrets, secret), { recursive: true });
      writeFileSync(join(secrets, secret, key), value, { mode: 0o600 });
    }
    const trust = join(dir, "trust");
    mkdirSync(trust, { mode: 0o755 });
    const bundle = join(trust, "ca-bundle.pem");
    const state = join(dir, "sidecar-state");
    mkdirSync(state, { mode: 0o700 });
    const tokens = join(state, "approver-tokens");
    const approverToken = ensureApproverCredential(tokens, "ann").token;
    for (const d of [secrets, trust, state]) execFileSync("chown", ["-R", `${PROXY_UID}:${PROXY_UID}`, d]);
    chmodSync(secrets, 0o700);
    const policyFile = join(dir, "policy.yaml");
    writeFileSync(policyFile, stringify(opts.policy), { mode: 0o644 });

    const upstream = startService(t.upstream, join(here, "tls-upstream.ts"), {
      port: 443,
      keyPem: serving.keyPem,
      certPem: serving.certPem,
      ...(opts.script ? { script: opts.script } : {}),
    });
    services.push(upstream);
    await upstream.waitFor((l) => l.ready === true);

    const init = await t.exec(t.agent, process.execPath, [
      INIT,
      "--proxy-uid",
      String(PROXY_UID),
      "--proxy-gid",
      String(PROXY_UID),
      "--redirect-port",
      "15900",
      "--dns-servers",
      "none",
      "--iptables-backend",
      opts.backend,
    ]);
    if (init.code !== 0) throw new Error(`airlock-init failed: ${init.stderr}`);

    // Debug logs name each captured connection ("captured connection mapped"): how a test tells a
    // captured request from one that came through the explicit proxy.
    const sidecar = startService(
      t.agent,
      join(here, "airlock-sidecar.ts"),
      {
        policyFiles: [policyFile],
        secretsDir: secrets,
        trustBundle: bundle,
        hashKeyFile: join(state, "hash.key"),
        approverTokenFile: tokens,
        uid: PROXY_UID,
        gid: PROXY_UID,
      },
      { AIRLOCK_LOG_LEVEL: "debug" },
    );
    services.push(sidecar);
    await sidecar.waitFor((l) => l.ready === true, 30_000);

    const asAgent = (env: Record<string, string>, command: string, args: readonly string[]) =>
      t.exec(t.agent, "setpriv", [
        "--reuid",
        String(AGENT_UID),
        "--regid",
        String(AGENT_UID),
        "--clear-groups",
        "env",
        "-i",
        ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        command,
        ...args,
      ]);
    const auditLine = (l: Record<string, unknown>) => l.audit as AuditEvent | undefined;
    return {
      t,
      dir,
      bundle,
      upstreamCaFile,
      serving,
      nodeBin,
      binDir,
      home,
      upstream,
      sidecar,
      approverToken,
      envFor: (mode, extra = {}) => ({
        PATH: "/usr/bin:/bin",
        HOME: home,
        ...Object.fromEntries(TRUST_ENV.map((e) => [e.name, bundle])),
        JAVA_TOOL_OPTIONS: JAVA_TRUST_OPTIONS.replace(JAVA_TRUSTSTORE_PATH, join(trust, "truststore.p12")),
        ...(mode === "proxied" ? Object.fromEntries(PROXY_ENV.map((e) => [e.name, e.value ?? ""])) : {}),
        ...extra,
      }),
      asAgent,
      audits: () => sidecar.lines.flatMap((l) => (auditLine(l) ? [auditLine(l) as AuditEvent] : [])),
      requests: () => upstream.lines.flatMap((l) => ("request" in l ? [l.request as UpstreamRequest] : [])),
      auditOf: (connection, path, from) =>
        sidecar
          .waitFor(
            (l) =>
              sidecar.lines.indexOf(l) >= from &&
              auditLine(l)?.connection === connection &&
              (auditLine(l)?.operation as { path?: string } | undefined)?.path === path,
            10_000,
          )
          .then((l) => l.audit as AuditEvent),
      async close() {
        if (process.env.AIRLOCK_NETNS_DEBUG)
          writeFileSync(
            process.env.AIRLOCK_NETNS_DEBUG,
            `${[...sidecar.lines, ...upstream.lines].map((l) => JSON.stringify(l)).join("\n")}\n${sidecar.stderr()}\n${upstream.stderr()}`,
          );
        await close();
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}
