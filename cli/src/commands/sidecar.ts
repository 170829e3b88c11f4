// `airlock sidecar` (the image's `airlock-sidecar`): runs the enforcement proxy.

import module from "node:module";
import { parseArgs } from "node:util";
import { startSidecar } from "../../../sidecar/src/app.ts";
import { type Command, UsageError } from "../command.ts";

const HELP = `Usage: airlock sidecar (--kubernetes | --policy FILE [--policy FILE...]) [flags]
       airlock sidecar drain [--admin-port 15990]

Runs the Airlock sidecar. In a pod (--kubernetes) it watches the AgentAccessPolicies that select
the pod; standalone it enforces policy files (reloaded when they change). \`drain\` asks a running
sidecar to stop taking new connections and finish in-flight ones (the preStop hook).

  --kubernetes             policies from the API server, identity from the downward API
  --policy FILE            AgentAccessPolicy YAML (repeatable)
  --secrets DIR            upstream credentials as DIR/<secret>/<key> (default /etc/airlock/secrets)
  --service-account SA     standalone: the agent's identity, NS/NAME (default default/agent)
  --podinfo DIR            downward API files (default /etc/airlock/podinfo)
  --admin-port N           /metrics /healthz /readyz (default 15990)
  --proxy-port N           explicit HTTP proxy for HTTP_PROXY clients (default 15901)
  --hash-key-file FILE     key of the hash masking strategy (created if missing)
  --service-account-token-dir DIR
                           projected service-account tokens for Vault's Kubernetes login
                           (default /var/run/secrets/kubernetes.io/serviceaccount)
  --approver NAME          standalone: approver whose credential is created at start (default: your OS user)
  --approver-token-file F  standalone: approver credentials, mode 0600 (default: $AIRLOCK_APPROVER_TOKEN_FILE,
                           else ~/.config/airlock/approver-tokens); \`airlock approvals --sidecar\` reads it
  --drain-timeout SECONDS  how long a drain (preStop, SIGTERM) waits for sessions to reach a
                           boundary before ending them (default 20)
  --log-level LEVEL        pino level (default info; AIRLOCK_LOG_LEVEL)
`;

async function drain(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { "admin-port": { type: "string" } }, strict: true });
  const port = Number(values["admin-port"] ?? 15990);
  const res = await fetch(`http://127.0.0.1:${port}/drain`, { method: "POST" }).catch((e: Error) => {
    throw new UsageError(`no sidecar answers on 127.0.0.1:${port}: ${e.message}`);
  });
  process.stdout.write(`${await res.text()}`);
  return res.ok ? 0 : 1;
}

export const command: Command = {
  summary: "run the enforcement proxy",
  async run(argv) {
    if (argv[0] === "drain") return drain(argv.slice(1));
    const { values } = parseArgs({
      args: argv,
      options: {
        kubernetes: { type: "boolean" },
        policy: { type: "string", multiple: true },
        secrets: { type: "string" },
        "service-account": { type: "string" },
        podinfo: { type: "string" },
        "admin-port": { type: "string" },
        "proxy-port": { type: "string" },
        "hash-key-file": { type: "string" },
        "service-account-token-dir": { type: "string" },
        approver: { type: "string" },
        "approver-token-file": { type: "string" },
        "log-level": { type: "string" },
        "drain-timeout": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(HELP);
      return 0;
    }
    if (!values.kubernetes && !values.policy?.length)
      throw new UsageError("give --kubernetes or at least one --policy FILE");
    const port = (flag: string, v: string | undefined) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535)
        throw new UsageError(`${flag} must be a port number, got ${v}`);
      return n;
    };
    if (values["log-level"]) process.env.AIRLOCK_LOG_LEVEL = values["log-level"];
    const drainTimeout = values["drain-timeout"] === undefined ? undefined : Number(values["drain-timeout"]);
    if (drainTimeout !== undefined && !(Number.isFinite(drainTimeout) && drainTimeout >= 0))
      throw new UsageError(`--drain-timeout must be a number of seconds, got ${values["drain-timeout"]}`);
    const sidecar = await startSidecar({
      kubernetes: values.kubernetes ?? false,
      policyFiles: values.policy,
      secretsDir: values.secrets,
      serviceAccount: values["service-account"],
      podInfoDir: values.podinfo,
      adminPort: port("--admin-port", values["admin-port"]),
      proxyPort: port("--proxy-port", values["proxy-port"]),
      hashKeyFile: values["hash-key-file"],
      serviceAccountTokenDir: values["service-account-token-dir"],
      approver: values.approver,
      approverTokenFile: values["approver-token-file"],
      ...(drainTimeout !== undefined ? { drainTimeoutMs: drainTimeout * 1000 } : {}),
    });
    // The modules of this start are compiled: keep them for the next start (the compile cache
    // is otherwise written only at a clean exit; no-op where it is off or read-only).
    module.flushCompileCache?.();
    const signal = await new Promise<string>((resolve) => {
      process.once("SIGTERM", () => resolve("SIGTERM"));
      process.once("SIGINT", () => resolve("SIGINT"));
    });
    await sidecar.drain(signal);
    await sidecar.close();
    return 0;
  },
};
