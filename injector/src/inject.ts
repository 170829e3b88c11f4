// The mutation itself, as a pure function of a pod, its namespace's policies and the injector's
// settings: no I/O, so the webhook, `airlock inject` and the golden tests share it exactly.
import { createHash } from "node:crypto";
import type {
  V1Container,
  V1EnvVar,
  V1Pod,
  V1PodSpec,
  V1ResourceRequirements,
  V1SecurityContext,
  V1Volume,
  V1VolumeMount,
} from "@kubernetes/client-node";
import { type AgentAccessPolicy, vaultTokenFile } from "../../api/src/index.ts";
import { parseCidr, parsePort, splitList } from "../../init/src/net.ts";
import type { InjectorConfig } from "./config.ts";
import {
  AGENT_DROPPED_CAPABILITIES,
  AGENT_DROPPED_SETUID_CAPABILITIES,
  ANNOTATION_DEFAULT_CONTAINER,
  ANNOTATION_STATUS,
  ANNOTATIONS,
  ANTHROPIC_API_HOST,
  ANTHROPIC_PLACEHOLDER_API_KEY,
  INIT_COMMAND,
  INIT_CONTAINER,
  JAVA_TRUST_OPTIONS,
  LABEL_INJECT,
  NAMESPACE_INJECT_ENABLED,
  NAMESPACE_INJECT_REQUIRED,
  PATHS,
  PORTS,
  SIDECAR_COMMAND,
  SIDECAR_CONTAINER,
  TRUST_BUNDLE_PATH,
  VOLUMES,
} from "./names.ts";
import { anthropicConnection, policiesSelecting, referencedSecrets, vaultAudiences } from "./policies.ts";

/** What the airlock.dev/status annotation records (JSON). */
export interface InjectionStatus {
  version: string;
  image: string;
  /** Injected containers, in order (both are init containers; the sidecar is a native sidecar). */
  containers: string[];
  volumes: string[];
  /** Secrets mounted into the sidecar, from the policies below. */
  secrets: string[];
  /** AgentAccessPolicies that selected the pod at admission. */
  policies: string[];
}

export type InjectOutcome =
  | { kind: "injected"; pod: V1Pod; status: InjectionStatus; warnings: string[] }
  | { kind: "skipped"; pod: V1Pod; reason: string }
  | { kind: "refused"; message: string; problems: string[] };

export interface InjectContext {
  config: InjectorConfig;
  /** The pod's namespace (from the admission request: generateName pods may have none in metadata). */
  namespace: string;
  /** Every AgentAccessPolicy of the namespace; those whose podSelector matches are used. */
  policies: readonly AgentAccessPolicy[];
  /**
   * Injection is mandatory (namespace label airlock.dev/inject=required): a pod that would be
   * skipped because it cannot be protected (hostNetwork) or because it opts out is refused.
   */
  required?: boolean;
}

const PROXY_URL = `http://127.0.0.1:${PORTS.explicitProxy}`;
const NO_PROXY = "127.0.0.1,localhost";
export const PROXY_ENV: readonly V1EnvVar[] = [
  { name: "HTTP_PROXY", value: PROXY_URL },
  { name: "HTTPS_PROXY", value: PROXY_URL },
  { name: "NO_PROXY", value: NO_PROXY },
  { name: "http_proxy", value: PROXY_URL },
  { name: "https_proxy", value: PROXY_URL },
  { name: "no_proxy", value: NO_PROXY },
];

/** Where common clients look for their CA bundle: the sidecar's trust bundle (pod CA + system roots). */
export const TRUST_ENV: readonly V1EnvVar[] = [
  "SSL_CERT_FILE",
  "NODE_EXTRA_CA_CERTS",
  "REQUESTS_CA_BUNDLE",
  "CURL_CA_BUNDLE",
  "GIT_SSL_CAINFO",
  "AWS_CA_BUNDLE",
].map((name) => ({ name, value: TRUST_BUNDLE_PATH }));

/** The volume the ServiceAccount admission plugin adds (kube-api-access-xxxxx). */
const AUTO_TOKEN_VOLUME = /^kube-api-access-[a-z0-9]+$/;
// resource.Quantity's grammar (k8s.io/apimachinery/pkg/api/resource), positive values only.
const QUANTITY = /^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+|[numkMGTPE]|[KMGTPE]i)?$/;

export function podDisplayName(pod: V1Pod): string {
  if (pod.metadata?.name) return pod.metadata.name;
  if (pod.metadata?.generateName) return `${pod.metadata.generateName}*`;
  return "(unnamed)";
}

/** `airlock-secret-<name>`, shortened with a hash to stay a valid 63-character DNS label. */
export function secretVolumeName(secret: string): string {
  const room = 63 - VOLUMES.secretPrefix.length;
  if (/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(secret) && secret.length <= room)
    return `${VOLUMES.secretPrefix}${secret}`;
  const hash = createHash("sha256").update(secret).digest("hex").slice(0, 8);
  const base = secret
    .replace(/[^a-z0-9-]/g, "-")
    .slice(0, room - 9)
    .replace(/-+$/, "");
  return `${VOLUMES.secretPrefix}${base}-${hash}`;
}

function normCap(c: string): string {
  return c.toUpperCase().replace(/^CAP_/, "");
}

function userContainers(pod: V1Pod): { container: V1Container; init: boolean }[] {
  return [
    ...(pod.spec?.initContainers ?? []).map((container) => ({ container, init: true })),
    ...(pod.spec?.containers ?? []).map((container) => ({ container, init: false })),
  ];
}

// The same parsers airlock-init uses on these values: what admission accepts, init accepts, so a
// bad annotation refuses the pod here instead of failing its init container later.
function parsePorts(annotation: string, value: string | undefined, problems: string[]): string[] {
  const out: string[] = [];
  for (const item of splitList(value ?? "")) {
    try {
      out.push(String(parsePort(item, annotation)));
    } catch (err) {
      problems.push(`annotation ${annotation}: ${(err as Error).message.replace(`${annotation}: `, "")}`);
    }
  }
  return [...new Set(out)];
}

function parseCidrs(value: string | undefined, problems: string[]): string[] {
  const out: string[] = [];
  for (const item of splitList(value ?? "")) {
    try {
      out.push(parseCidr(item).text);
    } catch (err) {
      problems.push(`annotation ${ANNOTATIONS.excludeOutboundCidrs}: ${(err as Error).message}`);
    }
  }
  return [...new Set(out)];
}

function proxyResources(
  annotations: Record<string, string>,
  config: InjectorConfig,
  problems: string[],
): V1ResourceRequirements {
  const pick = (annotation: string, fallback: string | undefined): string | undefined => {
    const v = annotations[annotation]?.trim();
    if (v === undefined || v === "") return fallback;
    if (!QUANTITY.test(v)) {
      problems.push(`annotation ${annotation}: "${v}" is not a resource quantity such as 100m or 128Mi`);
      return fallback;
    }
    return v;
  };
  const d = config.resources;
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  const cpu = pick(ANNOTATIONS.proxyCpu, d.cpuRequest);
  const memory = pick(ANNOTATIONS.proxyMemory, d.memoryRequest);
  const cpuLimit = pick(ANNOTATIONS.proxyCpuLimit, d.cpuLimit);
  const memoryLimit = pick(ANNOTATIONS.proxyMemoryLimit, d.memoryLimit);
  if (cpu) requests.cpu = cpu;
  if (memory) requests.memory = memory;
  if (cpuLimit) limits.cpu = cpuLimit;
  if (memoryLimit) limits.memory = memoryLimit;
  const out: V1ResourceRequirements = {};
  if (Object.keys(limits).length) out.limits = limits;
  if (Object.keys(requests).length) out.requests = requests;
  return out;
}

/**
 * Why the sidecar could not protect this pod. Each problem is one sentence naming the field and
 * what to change.
 */
function refusals(pod: V1Pod, config: InjectorConfig, allowSetuid: boolean): string[] {
  const problems: string[] = [];
  const spec = pod.spec ?? { containers: [] };
  const psc = spec.securityContext;
  if (spec.shareProcessNamespace)
    problems.push(
      "spec.shareProcessNamespace is true: agent containers could read the sidecar's memory and " +
        "credentials through /proc; remove it",
    );
  if (spec.hostPID)
    problems.push("spec.hostPID is true: agent containers could reach the sidecar's processes; remove it");
  if (psc?.fsGroup === config.proxyGid)
    problems.push(
      `spec.securityContext.fsGroup is ${config.proxyGid}, the proxy GID, whose traffic is not captured; choose another`,
    );
  if (psc?.supplementalGroups?.includes(config.proxyGid))
    problems.push(
      `spec.securityContext.supplementalGroups contains ${config.proxyGid}, the proxy GID, whose traffic is not captured; remove it`,
    );
  for (const name of [INIT_CONTAINER, SIDECAR_CONTAINER])
    if (userContainers(pod).some(({ container }) => container.name === name))
      problems.push(`container name ${name} is reserved for Airlock; rename the container`);
  const reservedVolumes = new Set<string>([VOLUMES.podinfo, VOLUMES.token, VOLUMES.tmp, VOLUMES.trust]);
  for (const v of spec.volumes ?? [])
    if (reservedVolumes.has(v.name) || v.name.startsWith(VOLUMES.secretPrefix))
      problems.push(`volume name ${v.name} is reserved for Airlock; rename the volume`);

  for (const { container: c, init } of userContainers(pod)) {
    const what = `${init ? "init container" : "container"} ${c.name}`;
    const sc = c.securityContext;
    const uid = sc?.runAsUser ?? psc?.runAsUser;
    const gid = sc?.runAsGroup ?? psc?.runAsGroup;
    if (uid === config.proxyUid)
      problems.push(
        `${what} runs as UID ${config.proxyUid}, the proxy UID, whose traffic is not captured; set another runAsUser`,
      );
    if (gid === config.proxyGid)
      problems.push(
        `${what} runs as GID ${config.proxyGid}, the proxy GID, whose traffic is not captured; set another runAsGroup`,
      );
    if (sc?.privileged)
      problems.push(`${what} is privileged: it could rewrite the capture rules; remove privileged`);
    const added = (sc?.capabilities?.add ?? []).map(normCap);
    for (const cap of ["ALL", ...AGENT_DROPPED_CAPABILITIES])
      if (added.includes(cap))
        problems.push(
          `${what} adds capability ${cap}: it could rewrite or bypass the capture rules; remove it`,
        );
    if (!allowSetuid)
      for (const cap of AGENT_DROPPED_SETUID_CAPABILITIES)
        if (added.includes(cap))
          problems.push(
            `${what} adds capability ${cap}, which would let it become the proxy UID and bypass capture; ` +
              `remove it, or accept the risk with annotation ${ANNOTATIONS.allowAgentSetuid}: "true"`,
          );
  }
  return problems;
}

function hardenAgent(
  c: V1Container,
  allowSetuid: boolean,
  what: string,
  warnings: string[],
): V1SecurityContext {
  const sc: V1SecurityContext = { ...(c.securityContext ?? {}) };
  const caps = { ...(sc.capabilities ?? {}) };
  const drop = [...(caps.drop ?? [])];
  const dropped = new Set(drop.map(normCap));
  if (!dropped.has("ALL")) {
    const wanted = allowSetuid
      ? [...AGENT_DROPPED_CAPABILITIES]
      : [...AGENT_DROPPED_CAPABILITIES, ...AGENT_DROPPED_SETUID_CAPABILITIES];
    for (const cap of wanted) if (!dropped.has(cap)) drop.push(cap);
  }
  caps.drop = drop;
  sc.capabilities = caps;
  if (!allowSetuid) {
    if (sc.allowPrivilegeEscalation === undefined) sc.allowPrivilegeEscalation = false;
    else if (sc.allowPrivilegeEscalation)
      warnings.push(
        `${what} sets allowPrivilegeEscalation: true; left as is (SETUID/SETGID are still dropped)`,
      );
  }
  return sc;
}

/**
 * Adds the proxy variables the container does not set. A variable the user set in either case
 * (NO_PROXY or no_proxy) is left alone in both cases: clients disagree on which one wins.
 */
function withProxyEnv(env: readonly V1EnvVar[] | undefined): V1EnvVar[] {
  const have = new Set((env ?? []).map((e) => e.name.toUpperCase()));
  return [...(env ?? []), ...[...PROXY_ENV, ...TRUST_ENV].filter((e) => !have.has(e.name.toUpperCase()))];
}

/**
 * JVMs read no CA-bundle variable: JAVA_TOOL_OPTIONS points them at the truststore. A value the
 * container sets is kept, with the options appended unless it names a truststore itself; one from
 * a ConfigMap or Secret cannot be extended here, so it is left alone with a warning.
 */
function withJavaTrust(env: V1EnvVar[], what: string, warnings: string[]): void {
  const own = env.find((e) => e.name === "JAVA_TOOL_OPTIONS");
  if (!own) {
    env.push({ name: "JAVA_TOOL_OPTIONS", value: JAVA_TRUST_OPTIONS });
    return;
  }
  if (own.valueFrom)
    warnings.push(
      `airlock: ${what} takes JAVA_TOOL_OPTIONS from ${own.valueFrom.configMapKeyRef ? "a ConfigMap" : "elsewhere"}: add ${JAVA_TRUST_OPTIONS} to it, or JVMs will not trust HTTPS through the sidecar`,
    );
  else if (!(own.value ?? "").includes("javax.net.ssl.trustStore"))
    own.value = `${own.value ?? ""} ${JAVA_TRUST_OPTIONS}`.trim();
}

function initContainer(
  config: InjectorConfig,
  annotations: Record<string, string>,
  problems: string[],
): V1Container {
  const args = [
    "--proxy-uid",
    String(config.proxyUid),
    "--proxy-gid",
    String(config.proxyGid),
    "--redirect-port",
    String(PORTS.capture),
  ];
  const cidrs = parseCidrs(annotations[ANNOTATIONS.excludeOutboundCidrs], problems);
  const exclude = parsePorts(
    ANNOTATIONS.excludeOutboundPorts,
    annotations[ANNOTATIONS.excludeOutboundPorts],
    problems,
  );
  const includeText = annotations[ANNOTATIONS.includeOutboundPorts]?.trim();
  const include =
    includeText === "*" ? [] : parsePorts(ANNOTATIONS.includeOutboundPorts, includeText, problems);
  if (exclude.includes(String(PORTS.capture)))
    problems.push(
      `annotation ${ANNOTATIONS.excludeOutboundPorts}: ${PORTS.capture} is the sidecar's capture port itself`,
    );
  if (cidrs.length) args.push("--exclude-cidrs", cidrs.join(","));
  if (exclude.length) args.push("--exclude-ports", exclude.join(","));
  if (include.length) args.push("--include-ports", include.join(","));
  return {
    name: INIT_CONTAINER,
    image: config.image,
    imagePullPolicy: config.imagePullPolicy,
    command: [INIT_COMMAND],
    args,
    env: [{ name: "XTABLES_LOCKFILE", value: `${PATHS.tmp}/xtables.lock` }],
    resources: { limits: { memory: "128Mi" }, requests: { cpu: "10m", memory: "32Mi" } },
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] },
    },
    volumeMounts: [{ name: VOLUMES.tmp, mountPath: PATHS.tmp }],
    terminationMessagePolicy: "FallbackToLogsOnError",
  };
}

function sidecarContainer(
  config: InjectorConfig,
  resources: V1ResourceRequirements,
  secretMounts: V1VolumeMount[],
): V1Container {
  const readyz = () => ({ httpGet: { path: "/readyz", port: PORTS.admin } });
  const fieldEnv = (name: string, fieldPath: string): V1EnvVar => ({
    name,
    valueFrom: { fieldRef: { apiVersion: "v1", fieldPath } },
  });
  return {
    name: SIDECAR_CONTAINER,
    image: config.image,
    imagePullPolicy: config.imagePullPolicy,
    command: [SIDECAR_COMMAND],
    args: ["--kubernetes"],
    // A native sidecar: started before the agent, ready before it, stopped after it; Jobs complete.
    restartPolicy: "Always",
    env: [
      fieldEnv("AIRLOCK_POD_NAME", "metadata.name"),
      fieldEnv("AIRLOCK_POD_NAMESPACE", "metadata.namespace"),
      fieldEnv("AIRLOCK_SERVICE_ACCOUNT", "spec.serviceAccountName"),
      // Lets approvals re-attach only to requests of this very pod and own them (ownerReference).
      fieldEnv("AIRLOCK_POD_UID", "metadata.uid"),
      { name: "AIRLOCK_TRUST_BUNDLE", value: TRUST_BUNDLE_PATH },
    ],
    ports: [{ name: "airlock-admin", containerPort: PORTS.admin, protocol: "TCP" }],
    resources,
    startupProbe: { ...readyz(), periodSeconds: 1, timeoutSeconds: 3, failureThreshold: 600 },
    readinessProbe: { ...readyz(), periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 3 },
    lifecycle: { preStop: { exec: { command: [SIDECAR_COMMAND, "drain"] } } },
    securityContext: {
      runAsUser: config.proxyUid,
      runAsGroup: config.proxyGid,
      runAsNonRoot: true,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    },
    volumeMounts: [
      { name: VOLUMES.podinfo, mountPath: PATHS.podinfo, readOnly: true },
      { name: VOLUMES.token, mountPath: PATHS.serviceAccount, readOnly: true },
      { name: VOLUMES.tmp, mountPath: PATHS.tmp },
      // Written before /readyz answers, so the startup probe holds the agent until it exists.
      { name: VOLUMES.trust, mountPath: PATHS.trust },
      ...secretMounts,
    ],
    terminationMessagePolicy: "FallbackToLogsOnError",
  };
}

function airlockVolumes(
  config: InjectorConfig,
  secrets: readonly string[],
  vaultAudiences: readonly string[],
): V1Volume[] {
  const field = (path: string, fieldPath: string) => ({ path, fieldRef: { apiVersion: "v1", fieldPath } });
  return [
    {
      name: VOLUMES.podinfo,
      downwardAPI: {
        items: [
          field("labels", "metadata.labels"),
          field("annotations", "metadata.annotations"),
          field("pod_name", "metadata.name"),
          field("namespace", "metadata.namespace"),
        ],
      },
    },
    {
      // The standard kube-api-access projection, but for the sidecar alone.
      name: VOLUMES.token,
      projected: {
        defaultMode: 0o644,
        sources: [
          { serviceAccountToken: { path: "token", expirationSeconds: config.tokenExpirationSeconds } },
          // Vault's Kubernetes login, for policies naming an audience (credentials.vault.auth.audience).
          ...vaultAudiences.map((audience) => ({
            serviceAccountToken: {
              path: vaultTokenFile(audience),
              audience,
              expirationSeconds: config.tokenExpirationSeconds,
            },
          })),
          { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
          { downwardAPI: { items: [field("namespace", "metadata.namespace")] } },
        ],
      },
    },
    { name: VOLUMES.tmp, emptyDir: { sizeLimit: "64Mi" } },
    { name: VOLUMES.trust, emptyDir: { medium: "Memory", sizeLimit: "1Mi" } },
    ...secrets.map((secretName) => ({
      name: secretVolumeName(secretName),
      // optional: a policy naming a missing Secret shows SecretNotFound on the policy and fails
      // that connection, rather than keeping the whole pod from starting.
      secret: { secretName, optional: true, defaultMode: 0o644 },
    })),
  ];
}

function isTokenVolume(v: V1Volume): boolean {
  return (v.projected?.sources ?? []).some((s) => s.serviceAccountToken !== undefined);
}

/** `expected` with every field it sets equal in `actual` (which may hold more: API defaults). */
function covers(actual: unknown, expected: unknown): boolean {
  if (Array.isArray(expected))
    return (
      Array.isArray(actual) &&
      actual.length === expected.length &&
      expected.every((e, i) => covers(actual[i], e))
    );
  if (typeof expected === "object" && expected !== null)
    return (
      typeof actual === "object" &&
      actual !== null &&
      Object.entries(expected).every(([k, v]) => covers((actual as Record<string, unknown>)[k], v))
    );
  return actual === expected;
}

/**
 * Why the Airlock init containers of a pod marked as injected are not those this injector would
 * add (name, image, command, args, restartPolicy, securityContext), or undefined when they are.
 */
function injectedDiffers(pod: V1Pod, ctx: InjectContext): string | undefined {
  const annotations = pod.metadata?.annotations ?? {};
  const ignored: string[] = [];
  const secrets = referencedSecrets(policiesSelecting(ctx.policies, pod.metadata?.labels ?? {}));
  const mounts = secrets.map((s) => ({
    name: secretVolumeName(s),
    mountPath: `${PATHS.secrets}/${s}`,
    readOnly: true,
  }));
  const expected = [
    initContainer(ctx.config, annotations, ignored),
    sidecarContainer(ctx.config, proxyResources(annotations, ctx.config, ignored), mounts),
  ];
  const inits = pod.spec?.initContainers ?? [];
  for (const [i, want] of expected.entries()) {
    const have = inits[i];
    if (have?.name !== want.name) return `init container ${i + 1} is not ${want.name}`;
    for (const field of ["image", "command", "args", "restartPolicy", "securityContext"] as const)
      if (!covers(have[field], want[field])) return `its ${want.name} container's ${field} is not Airlock's`;
  }
  return undefined;
}

/**
 * Injects Airlock into a pod, or says why it was skipped or must be refused. The input is not
 * modified. Injecting an injected pod returns it unchanged (`skipped`).
 */
export function injectPod(input: V1Pod, ctx: InjectContext): InjectOutcome {
  const { config } = ctx;
  const annotations = input.metadata?.annotations ?? {};
  const labels = input.metadata?.labels ?? {};
  if (annotations[ANNOTATION_STATUS] !== undefined) {
    // Where injection is mandatory the annotation is a claim to verify: anyone writing the pod
    // can set it, and a pod without Airlock's own containers (or with altered ones: capture
    // exclusions in the args, another image) would otherwise start unguarded.
    const forged = ctx.required ? injectedDiffers(input, ctx) : undefined;
    if (forged)
      return {
        kind: "refused",
        problems: [forged],
        message:
          `airlock: refusing pod ${podDisplayName(input)} in namespace ${ctx.namespace}: it carries ${ANNOTATION_STATUS} ` +
          `but ${forged}, and namespace ${ctx.namespace} requires injection (namespace label ${LABEL_INJECT}=${NAMESPACE_INJECT_REQUIRED}); ` +
          `remove the annotation (and any ${INIT_CONTAINER}/${SIDECAR_CONTAINER} containers) to have it injected`,
      };
    return { kind: "skipped", pod: input, reason: `already injected (${ANNOTATION_STATUS} is set)` };
  }
  if (config.systemNamespaces.includes(ctx.namespace))
    return { kind: "skipped", pod: input, reason: `system namespace ${ctx.namespace}` };
  const unprotectable: string[] = [];
  if (labels[LABEL_INJECT] === "false") unprotectable.push(`pod label ${LABEL_INJECT}=false`);
  if (input.spec?.hostNetwork)
    unprotectable.push("hostNetwork pod: capture would rewrite the node's own network rules");
  if (unprotectable.length && ctx.required) {
    const problems = unprotectable.map((p) => `${p}, and namespace ${ctx.namespace} requires injection`);
    return {
      kind: "refused",
      problems,
      message:
        `airlock: refusing pod ${podDisplayName(input)} in namespace ${ctx.namespace}: ${problems.join("; ")} ` +
        `(namespace label ${LABEL_INJECT}=${NAMESPACE_INJECT_REQUIRED}); run it elsewhere, or label the namespace ${LABEL_INJECT}=${NAMESPACE_INJECT_ENABLED} to allow unguarded pods`,
    };
  }
  if (unprotectable.length) return { kind: "skipped", pod: input, reason: unprotectable.join("; ") };

  const allowSetuid = annotations[ANNOTATIONS.allowAgentSetuid] === "true";
  const problems = refusals(input, config, allowSetuid);
  const resources = proxyResources(annotations, config, problems);
  const init = initContainer(config, annotations, problems);
  if (problems.length) {
    return {
      kind: "refused",
      problems,
      message: `airlock: refusing pod ${podDisplayName(input)} in namespace ${ctx.namespace}: ${problems.join("; ")}`,
    };
  }

  const pod = structuredClone(input);
  const spec = pod.spec ?? { containers: [] };
  pod.spec = spec;
  const warnings: string[] = [];
  const selecting = policiesSelecting(ctx.policies, labels);
  const secrets = referencedSecrets(selecting);
  if (selecting.length === 0)
    warnings.push(
      `airlock: no AgentAccessPolicy in namespace ${ctx.namespace} selects this pod; all its egress will be denied`,
    );
  if (allowSetuid)
    warnings.push(
      `airlock: ${ANNOTATIONS.allowAgentSetuid}=true: agent containers keep SETUID/SETGID; an agent running as root can become UID ${config.proxyUid} and bypass capture`,
    );

  // The ServiceAccount admission plugin has already mounted the pod's token into every container.
  // The agent must not hold it: drop those mounts and the volume; the sidecar gets its own.
  const autoTokenVolumes = new Set(
    (spec.volumes ?? []).filter((v) => AUTO_TOKEN_VOLUME.test(v.name) && isTokenVolume(v)).map((v) => v.name),
  );
  const userTokenVolumes = new Set(
    (spec.volumes ?? []).filter((v) => !autoTokenVolumes.has(v.name) && isTokenVolume(v)).map((v) => v.name),
  );
  const secretVolumes = new Map(
    (spec.volumes ?? []).flatMap((v) => (v.secret?.secretName ? [[v.name, v.secret.secretName]] : [])),
  );
  const anthropic = anthropicConnection(selecting, ANTHROPIC_API_HOST);
  for (const { container: c, init: isInit } of userContainers(pod)) {
    const what = `${isInit ? "init container" : "container"} ${c.name}`;
    if (c.volumeMounts) {
      c.volumeMounts = c.volumeMounts.filter((m) => !autoTokenVolumes.has(m.name));
      if (c.volumeMounts.length === 0) delete c.volumeMounts;
    }
    for (const m of c.volumeMounts ?? []) {
      if (userTokenVolumes.has(m.name))
        warnings.push(
          `airlock: ${what} mounts a service-account token (volume ${m.name}); the agent holds it`,
        );
      const secret = secretVolumes.get(m.name);
      if (secret && secrets.includes(secret))
        warnings.push(
          `airlock: ${what} mounts Secret ${secret}, which the sidecar holds for a policy; the agent can read the credential`,
        );
    }
    c.env = withProxyEnv(c.env);
    withJavaTrust(c.env, what, warnings);
    if (anthropic) {
      // An unmodified Claude agent needs some key to start; the sidecar holds the real one.
      const own = c.env.find((e) => e.name === "ANTHROPIC_API_KEY");
      if (!own) c.env.push({ name: "ANTHROPIC_API_KEY", value: ANTHROPIC_PLACEHOLDER_API_KEY });
      else if (own.value !== ANTHROPIC_PLACEHOLDER_API_KEY)
        warnings.push(
          `airlock: ${what} sets ANTHROPIC_API_KEY itself; left as is, but the sidecar injects the key of connection ${anthropic.connection} (policy ${anthropic.policy}), so the agent need not hold one`,
        );
    }
    c.volumeMounts = [
      ...(c.volumeMounts ?? []),
      { name: VOLUMES.trust, mountPath: PATHS.trust, readOnly: true },
    ];
    c.securityContext = hardenAgent(c, allowSetuid, what, warnings);
  }
  if (autoTokenVolumes.size) {
    spec.volumes = (spec.volumes ?? []).filter((v) => !autoTokenVolumes.has(v.name));
    if (spec.volumes.length === 0) delete spec.volumes;
  }

  const secretMounts = secrets.map((s) => ({
    name: secretVolumeName(s),
    mountPath: `${PATHS.secrets}/${s}`,
    readOnly: true,
  }));
  const volumes = airlockVolumes(config, secrets, vaultAudiences(selecting));
  spec.volumes = [...(spec.volumes ?? []), ...volumes];
  const { initContainers: userInit, ...rest } = spec;
  // initContainers first, so that the spec reads in start-up order.
  const outSpec: V1PodSpec = {
    initContainers: [init, sidecarContainer(config, resources, secretMounts), ...(userInit ?? [])],
    ...rest,
    // The ServiceAccount admission plugin sets this before webhooks run; where it is disabled the
    // API server rejects a projected token without a service account, so do what it would do.
    serviceAccountName: rest.serviceAccountName || rest.serviceAccount || "default",
    automountServiceAccountToken: false,
  };
  pod.spec = outSpec;

  const status: InjectionStatus = {
    version: config.version,
    image: config.image,
    containers: [INIT_CONTAINER, SIDECAR_CONTAINER],
    volumes: volumes.map((v) => v.name),
    secrets,
    policies: selecting.map((p) => p.metadata?.name ?? ""),
  };
  const metadata = pod.metadata ?? {};
  pod.metadata = metadata;
  const outAnnotations = { ...(metadata.annotations ?? {}) };
  const first = outSpec.containers[0]?.name;
  if (first && outAnnotations[ANNOTATION_DEFAULT_CONTAINER] === undefined)
    outAnnotations[ANNOTATION_DEFAULT_CONTAINER] = first;
  outAnnotations[ANNOTATION_STATUS] = JSON.stringify(status);
  metadata.annotations = outAnnotations;
  return { kind: "injected", pod, status, warnings };
}

export function parseStatus(pod: V1Pod): InjectionStatus | undefined {
  const raw = pod.metadata?.annotations?.[ANNOTATION_STATUS];
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as InjectionStatus;
  } catch {
    return undefined;
  }
}
