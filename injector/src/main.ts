// `airlock-injector`: the mutating admission webhook and the policy controller, in one process.
//
//   node injector/src/main.ts --bootstrap-tls --webhook-config-name airlock-injector
//   node injector/src/main.ts --cert-dir /etc/airlock/injector/tls      (cert-manager, files)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { createLogger } from "../../sidecar/src/telemetry/logger.ts";
import { ensureServingBundle, patchCaBundle, serviceHosts } from "./bootstrap.ts";
import { defaultConfig } from "./config.ts";
import { createPolicyController } from "./controller.ts";
import { createInjectorMetrics } from "./metrics.ts";
import { type InjectorServer, startInjectorServer } from "./server.ts";
import { loadTlsFiles, type TlsFileSource } from "./tls.ts";

export const USAGE = `Usage: airlock-injector [flags]

The Airlock mutating admission webhook (adds the sidecar to agent pods) and the policy
controller (writes AgentAccessPolicy status), in one process.

Flags:
  --port N                    HTTPS port of the webhook (POST /inject, /healthz, /readyz); default 9443
  --host ADDR                 listen address; default 0.0.0.0
  --cert-dir DIR              serving certificate files tls.crt and tls.key, reloaded when they
                              change; default /etc/airlock/injector/tls
  --bootstrap-tls             make a CA and serving certificate, keep them in the Secret
                              --tls-secret, and write the CA into the caBundle of
                              --webhook-config-name (instead of --cert-dir)
  --webhook-config-name NAME  MutatingWebhookConfiguration to patch in bootstrap mode;
                              default airlock-injector
  --tls-secret NAME           Secret holding the bootstrap CA and certificate; default airlock-injector-tls
  --service NAME              Service the API server calls; its DNS names go into the bootstrap
                              certificate; default airlock-injector
  --tls-hosts H1,H2           further names or IP addresses for the bootstrap certificate
  --namespace NS              the injector's namespace; default $POD_NAMESPACE, the service
                              account's namespace, or airlock-system
  --image IMAGE               image injected for airlock-sidecar and airlock-init;
                              default ghcr.io/airlock-dev/airlock:<version>
  --image-pull-policy P       Always, IfNotPresent (default) or Never
  --metrics-port N            plain-HTTP port for /metrics, /healthz, /readyz; default 15991,
                              -1 serves /metrics on the HTTPS port instead
  --watch-namespaces A,B      only watch AgentAccessPolicies and Secrets in these namespaces
  --kubeconfig FILE           kubeconfig; default in-cluster, then $KUBECONFIG / ~/.kube/config
  --log-level LEVEL           pino level; default info
  -h, --help                  this text
`;

const SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

function ownNamespace(flag: string | undefined): string {
  if (flag) return flag;
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE;
  try {
    return readFileSync(SA_NAMESPACE_FILE, "utf8").trim() || "airlock-system";
  } catch {
    return "airlock-system";
  }
}

function intFlag(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < -1 || n > 65535) throw new Error(`--${name}: not a port: ${value}`);
  return n;
}

function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else kc.loadFromDefault();
  } catch (err) {
    throw new Error(`cannot load kubeconfig ${path ?? "(default)"}: ${(err as Error).message}`);
  }
  return kc;
}

const list = (s: string | undefined) =>
  (s ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);

export interface RunningInjector {
  server: InjectorServer;
  stop(): Promise<void>;
}

/** Starts everything the flags ask for; resolves once serving. */
export async function startInjector(argv: readonly string[]): Promise<RunningInjector> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: "string" },
      host: { type: "string" },
      "cert-dir": { type: "string" },
      "bootstrap-tls": { type: "boolean" },
      "webhook-config-name": { type: "string" },
      "tls-secret": { type: "string" },
      service: { type: "string" },
      "tls-hosts": { type: "string" },
      namespace: { type: "string" },
      image: { type: "string" },
      "image-pull-policy": { type: "string" },
      "metrics-port": { type: "string" },
      "watch-namespaces": { type: "string" },
      kubeconfig: { type: "string" },
      "log-level": { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
  const log = createLogger({
    name: "airlock-injector",
    ...(values["log-level"] ? { level: values["log-level"] } : {}),
  });
  const pull = values["image-pull-policy"] ?? "IfNotPresent";
  if (pull !== "Always" && pull !== "IfNotPresent" && pull !== "Never")
    throw new Error(`--image-pull-policy: ${pull} is not Always, IfNotPresent or Never`);
  const config = defaultConfig({
    imagePullPolicy: pull,
    ...(values.image ? { image: values.image } : {}),
  });
  const namespace = ownNamespace(values.namespace);
  const kubeConfig = loadKubeConfig(values.kubeconfig);
  const metrics = createInjectorMetrics();
  const controller = createPolicyController({
    kubeConfig,
    namespaces: list(values["watch-namespaces"]),
    metrics,
    log,
  });

  const webhookConfigName = values["webhook-config-name"] ?? "airlock-injector";
  let tlsFiles: TlsFileSource | undefined;
  let refresh: NodeJS.Timeout | undefined;
  let server: InjectorServer | undefined;
  let tls: { cert: string; key: string };
  let caPem: string | undefined;
  const bootstrapOpts = {
    kubeConfig,
    namespace,
    secretName: values["tls-secret"] ?? "airlock-injector-tls",
    hosts: [...serviceHosts(values.service ?? "airlock-injector", namespace), ...list(values["tls-hosts"])],
    log: (msg: string) => log.info(msg),
  };
  if (values["bootstrap-tls"]) {
    const bundle = await ensureServingBundle(bootstrapOpts);
    tls = bundle;
    caPem = bundle.caCert;
  } else {
    const dir = values["cert-dir"] ?? "/etc/airlock/injector/tls";
    tlsFiles = await loadTlsFiles({
      certFile: join(dir, "tls.crt"),
      keyFile: join(dir, "tls.key"),
      onChange: (m) => {
        server?.setTls(m);
        metrics.tlsReloads.inc({ result: "success" });
        log.info({ dir }, "serving certificate reloaded");
      },
      onError: (err) => {
        metrics.tlsReloads.inc({ result: "error" });
        log.warn({ err: err.message, dir }, "serving certificate not reloaded; keeping the previous one");
      },
    }).catch((err: unknown) => {
      throw new Error(
        `--cert-dir ${dir}: cannot load tls.crt and tls.key (${(err as Error).message}); ` +
          "mount the serving certificate there, or use --bootstrap-tls",
      );
    });
    tls = tlsFiles.current();
  }
  metrics.tlsReloads.inc({ result: "success" });

  // Serve first (health answers at once), be ready only when the policy cache is synced.
  const metricsPort = intFlag("metrics-port", values["metrics-port"], 15991);
  server = await startInjectorServer({
    config,
    policies: controller,
    tls,
    host: values.host ?? "0.0.0.0",
    port: intFlag("port", values.port, 9443),
    ...(metricsPort >= 0 ? { metricsPort } : {}),
    metrics,
    ready: () => controller.synced(),
    log,
  });
  log.info({ port: server.port, metricsPort: server.metricsPort, image: config.image }, "webhook serving");
  await controller.start();
  log.info("policy cache synced; ready");

  if (caPem) {
    const running = server;
    const ensureCa = async () => {
      try {
        const bundle = await ensureServingBundle(bootstrapOpts);
        if (bundle.cert !== tls.cert) {
          tls = bundle;
          running.setTls(bundle);
        }
        if (await patchCaBundle({ kubeConfig, webhookConfigName, caPem: bundle.caCert }))
          log.info({ webhookConfigName }, "caBundle written");
      } catch (err) {
        log.error({ err, webhookConfigName }, "bootstrap TLS: could not update the certificate or caBundle");
      }
    };
    await ensureCa();
    // Re-assert hourly: a chart upgrade may reset caBundle; renewal happens 30 days ahead.
    refresh = setInterval(() => void ensureCa(), 3_600_000);
    refresh.unref();
  }

  return {
    server,
    async stop() {
      if (refresh) clearInterval(refresh);
      tlsFiles?.close();
      await controller.stop();
      await server?.close();
      log.flush();
    },
  };
}

export async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(USAGE);
    return 0;
  }
  let running: RunningInjector;
  try {
    running = await startInjector(argv);
  } catch (err) {
    process.stderr.write(`airlock-injector: ${(err as Error).message}\n`);
    return (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS") ? 2 : 1;
  }
  await new Promise<void>((resolve) => {
    const done = () => resolve();
    process.once("SIGTERM", done);
    process.once("SIGINT", done);
  });
  await running.stop();
  return 0;
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
