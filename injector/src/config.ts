// Settings of one injector: what image to inject and the defaults for the sidecar's resources.
import { readFileSync } from "node:fs";
import { PROXY_GID, PROXY_UID, SYSTEM_NAMESPACES } from "./names.ts";

export interface ResourceDefaults {
  cpuRequest: string;
  memoryRequest: string;
  /** Absent: no CPU limit (throttling a proxy adds latency to every request). */
  cpuLimit?: string;
  memoryLimit?: string;
}

export interface InjectorConfig {
  /** Image of the sidecar and airlock-init (one image, several entry points). */
  image: string;
  imagePullPolicy: "Always" | "IfNotPresent" | "Never";
  /** Recorded in the airlock.dev/status annotation. */
  version: string;
  proxyUid: number;
  proxyGid: number;
  resources: ResourceDefaults;
  /** Namespaces never injected. */
  systemNamespaces: readonly string[];
  /** Lifetime of the projected service-account token mounted into the sidecar. */
  tokenExpirationSeconds: number;
}

export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}

export function defaultImage(version: string = packageVersion()): string {
  return `ghcr.io/airlock-dev/airlock:${version}`;
}

// Measured on a real node (test/node): the sidecar's resident set is ~190 MB idle and ~320 MB
// (anon 257 MB + file 60 MB) once the PostgreSQL parser is loaded; at 256Mi the kernel OOM-killed
// it on the second statement, and the agent's connections were refused until it restarted.
export const DEFAULT_RESOURCES: ResourceDefaults = {
  cpuRequest: "50m",
  memoryRequest: "192Mi",
  memoryLimit: "512Mi",
};

export function defaultConfig(overrides: Partial<InjectorConfig> = {}): InjectorConfig {
  const version = overrides.version ?? packageVersion();
  return {
    image: defaultImage(version),
    imagePullPolicy: "IfNotPresent",
    version,
    proxyUid: PROXY_UID,
    proxyGid: PROXY_GID,
    resources: DEFAULT_RESOURCES,
    systemNamespaces: SYSTEM_NAMESPACES,
    tokenExpirationSeconds: 3600,
    ...overrides,
  };
}
