// How the sidecar reaches the API server: the server URL, the CA that signs it, and the pod's
// credentials. In a pod that is the service account's projected token (re-read on every request:
// the kubelet rotates it) and the cluster CA; tests hand in a kubeconfig object instead. Read by
// shape, so that neither path loads the Kubernetes client library.
import { readFileSync } from "node:fs";

export interface KubeAccess {
  /** `https://host:port`, no trailing slash. */
  server: string;
  /** PEM of the CA that signs the API server's certificate (absent: the system roots). */
  ca?: string;
  /** A bearer token, read when a request is made. */
  token?: () => string;
  /** Client certificate and key (PEM), for kubeconfigs that authenticate that way. */
  cert?: string;
  key?: string;
}

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export class KubeAccessError extends Error {
  override readonly name = "KubeAccessError";
}

/** The in-cluster access of a pod: KUBERNETES_SERVICE_HOST/PORT, the service account's token and CA. */
export function inClusterAccess(env: NodeJS.ProcessEnv = process.env, dir = SA_DIR): KubeAccess {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host)
    throw new KubeAccessError(
      "not running in a pod: KUBERNETES_SERVICE_HOST is unset (use --policy FILE for a standalone sidecar)",
    );
  const read = (name: string) => {
    try {
      return readFileSync(`${dir}/${name}`, "utf8");
    } catch (err) {
      throw new KubeAccessError(
        `cannot read the service account's ${name} in ${dir}: ${(err as Error).message}`,
      );
    }
  };
  const ca = read("ca.crt");
  read("token"); // fail at start, not at the first request
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    ca,
    token: () => read("token").trim(),
  };
}

/** The parts of a kubeconfig object (e.g. @kubernetes/client-node's KubeConfig) the sidecar reads. */
export interface KubeConfigLike {
  getCurrentCluster():
    | { server: string; caData?: string | undefined; caFile?: string | undefined; skipTLSVerify?: boolean }
    | null
    | undefined;
  getCurrentUser():
    | {
        token?: string | undefined;
        certData?: string | undefined;
        keyData?: string | undefined;
        certFile?: string | undefined;
        keyFile?: string | undefined;
      }
    | null
    | undefined;
}

const b64 = (s: string) => Buffer.from(s, "base64").toString("utf8");

/** Access from a kubeconfig's current context (tests, out-of-cluster runs). */
export function accessFromKubeConfig(kc: KubeConfigLike): KubeAccess {
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new KubeAccessError("the kubeconfig has no current cluster");
  if (cluster.skipTLSVerify)
    throw new KubeAccessError("the kubeconfig skips TLS verification; the sidecar refuses to");
  const user = kc.getCurrentUser() ?? {};
  const ca = cluster.caData
    ? b64(cluster.caData)
    : cluster.caFile
      ? readFileSync(cluster.caFile, "utf8")
      : undefined;
  const cert = user.certData
    ? b64(user.certData)
    : user.certFile
      ? readFileSync(user.certFile, "utf8")
      : undefined;
  const key = user.keyData
    ? b64(user.keyData)
    : user.keyFile
      ? readFileSync(user.keyFile, "utf8")
      : undefined;
  const token = user.token;
  return {
    server: cluster.server.replace(/\/+$/, ""),
    ...(ca ? { ca } : {}),
    ...(cert && key ? { cert, key } : {}),
    ...(token ? { token: () => token } : {}),
  };
}
