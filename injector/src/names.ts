// The contract between the injector, the sidecar, airlock-init and the chart.
// Change one only everywhere at once.

export const LABEL_INJECT = "airlock.dev/inject";
/** Namespace label value that turns injection on. */
export const NAMESPACE_INJECT_ENABLED = "enabled";
/**
 * Namespace label value that turns injection on and makes it mandatory: a pod the injector cannot
 * protect (hostNetwork, or labelled airlock.dev/inject=false) is refused instead of admitted unguarded.
 */
export const NAMESPACE_INJECT_REQUIRED = "required";
/** Records what was injected (JSON); its presence makes injection idempotent. */
export const ANNOTATION_STATUS = "airlock.dev/status";
export const ANNOTATION_DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container";

/** Tuning annotations on the pod (or the pod template). */
export const ANNOTATIONS = {
  proxyCpu: "airlock.dev/proxy-cpu",
  proxyMemory: "airlock.dev/proxy-memory",
  proxyCpuLimit: "airlock.dev/proxy-cpu-limit",
  proxyMemoryLimit: "airlock.dev/proxy-memory-limit",
  excludeOutboundCidrs: "airlock.dev/exclude-outbound-cidrs",
  excludeOutboundPorts: "airlock.dev/exclude-outbound-ports",
  includeOutboundPorts: "airlock.dev/include-outbound-ports",
  /**
   * Opt-out of the setuid hardening: agent containers keep SETUID/SETGID and may escalate
   * privileges. An agent running as root can then setuid(1717) and skip capture.
   */
  allowAgentSetuid: "airlock.dev/allow-agent-setuid",
} as const;

export const PROXY_UID = 1717;
export const PROXY_GID = 1717;

export const PORTS = {
  /** Transparent egress capture (iptables REDIRECT target). */
  capture: 15900,
  /** Explicit HTTP(S) proxy (HTTP_PROXY / HTTPS_PROXY). */
  explicitProxy: 15901,
  /** Admin: /healthz, /readyz, /metrics. */
  admin: 15990,
} as const;

export const SIDECAR_CONTAINER = "airlock-sidecar";
export const INIT_CONTAINER = "airlock-init";
export const SIDECAR_COMMAND = "airlock-sidecar";
export const INIT_COMMAND = "airlock-init";

export const VOLUMES = {
  podinfo: "airlock-podinfo",
  token: "airlock-token",
  tmp: "airlock-tmp",
  /** The sidecar writes the trust bundle (system roots + pod CA) here; agents mount it read-only. */
  trust: "airlock-trust",
  /** Prefix of the per-Secret volumes. */
  secretPrefix: "airlock-secret-",
} as const;

export const PATHS = {
  podinfo: "/etc/airlock/podinfo",
  secrets: "/etc/airlock/secrets",
  serviceAccount: "/var/run/secrets/kubernetes.io/serviceaccount",
  tmp: "/tmp",
  // Outside /etc/airlock, where the sidecar's own files live: agents see the bundle and nothing else.
  trust: "/var/run/airlock/trust",
} as const;

/** The trust bundle the sidecar writes (PEM), as agents see it. */
export const TRUST_BUNDLE_PATH = `${PATHS.trust}/ca-bundle.pem`;
/** The same certificates as a Java truststore (PKCS#12, no password), written next to it. */
export const JAVA_TRUSTSTORE_PATH = `${PATHS.trust}/truststore.p12`;
/** What the injector adds to JAVA_TOOL_OPTIONS so that every JVM trusts the pod CA (and the system roots). */
export const JAVA_TRUST_OPTIONS = `-Djavax.net.ssl.trustStore=${JAVA_TRUSTSTORE_PATH} -Djavax.net.ssl.trustStoreType=PKCS12`;

/**
 * What an agent container gets as ANTHROPIC_API_KEY when a policy selecting its pod has an Anthropic
 * connection: inert (not a key, never valid upstream), so that an unmodified Anthropic SDK, Claude
 * Code or Claude Agent SDK starts and calls https://api.anthropic.com; the sidecar replaces the
 * x-api-key header with the key it holds. Documented in the README; tests compare against it.
 */
export const ANTHROPIC_PLACEHOLDER_API_KEY = "airlock-placeholder-the-sidecar-holds-the-real-key";
export const ANTHROPIC_API_HOST = "api.anthropic.com";

/** Namespaces the injector never touches, whatever their labels. */
export const SYSTEM_NAMESPACES: readonly string[] = [
  "kube-system",
  "kube-public",
  "kube-node-lease",
  "airlock-system",
];

/** Capabilities removed from agent containers so they cannot become the proxy or rewrite the rules. */
export const AGENT_DROPPED_CAPABILITIES = ["NET_ADMIN", "NET_RAW"] as const;
export const AGENT_DROPPED_SETUID_CAPABILITIES = ["SETUID", "SETGID"] as const;
