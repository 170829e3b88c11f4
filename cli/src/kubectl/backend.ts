// Where `kubectl airlock` reads and decides AccessRequests: the Kubernetes API (as the user in the
// kubeconfig; the admission policy checks who they are) or, standalone, a sidecar's loopback admin
// API (`--sidecar http://127.0.0.1:15990`).
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import {
  ApiException,
  AuthenticationV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesListObject,
} from "@kubernetes/client-node";
import { type AccessRequest, GROUP, VERSION } from "../../../api/src/index.ts";
import {
  type ApproverCredential,
  CredentialFileError,
  defaultApproverTokenFile,
  readApproverCredentials,
} from "../../../sidecar/src/approvals/credentials.ts";

export const PLURAL = "accessrequests";

/** A failure to report as `error: ...` with exit status 1 (not a usage error). */
export class PluginError extends Error {
  override readonly name = "PluginError";
}

export interface Grant {
  namespace: string;
  name: string;
  requester: string;
  connection: string;
  rule: string;
  approvers: readonly string[];
  expiresAt: string;
}

export type DecisionKind = "approve" | "deny";

export interface Backend {
  /** "kubernetes" or "sidecar". */
  readonly kind: string;
  /** Namespace used when none is given (context namespace, or the sidecar's). */
  defaultNamespace(): Promise<string>;
  list(namespace: string | undefined): Promise<AccessRequest[]>;
  get(name: string, namespace: string): Promise<AccessRequest>;
  whoami(): Promise<string>;
  /** Appends one decision by `user` and returns the updated request. */
  decide(
    name: string,
    namespace: string,
    kind: DecisionKind,
    user: string,
    text?: string,
  ): Promise<AccessRequest>;
  grants(namespace: string | undefined): Promise<Grant[]>;
}

function apiMessage(err: unknown): string {
  if (err instanceof ApiException) {
    let body: unknown = err.body;
    if (typeof body === "string") {
      const text: string = body;
      try {
        body = JSON.parse(text);
      } catch {
        return text.trim() || `HTTP ${err.code}`;
      }
    }
    const m = (body as { message?: unknown } | undefined)?.message;
    return typeof m === "string" ? m : `HTTP ${err.code}`;
  }
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: string } }).cause;
    return cause?.code ? `${err.message} (${cause.code})` : err.message;
  }
  return String(err);
}

const code = (err: unknown) => (err instanceof ApiException ? err.code : undefined);

export interface KubeOptions {
  kubeconfig?: string;
  context?: string;
  /** kubeconfig user to use (kubectl's --user). */
  user?: string;
}

export function kubeBackend(opts: KubeOptions): Backend {
  const kc = new KubeConfig();
  // With no kubeconfig at all, client-node falls back to http://localhost:8080 and fails with a
  // message about skipTLSVerify: say what is missing instead.
  const files = (process.env.KUBECONFIG ?? "").split(delimiter).filter(Boolean);
  const defaultFile = join(homedir(), ".kube", "config");
  if (
    !opts.kubeconfig &&
    !process.env.KUBERNETES_SERVICE_HOST &&
    !(files.length ? files : [defaultFile]).some((f) => existsSync(f))
  )
    throw new PluginError(
      `no kubeconfig found (${files.length ? `KUBECONFIG=${process.env.KUBECONFIG}` : defaultFile}): ` +
        "pass --kubeconfig FILE or set KUBECONFIG to reach a cluster, or use --sidecar http://127.0.0.1:15990 for a standalone sidecar",
    );
  try {
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
    if (opts.context) {
      if (!kc.getContextObject(opts.context))
        throw new PluginError(`context "${opts.context}" not found in kubeconfig`);
      kc.setCurrentContext(opts.context);
    }
    if (opts.user) {
      const ctx = kc.getContextObject(kc.getCurrentContext());
      if (!kc.getUser(opts.user)) throw new PluginError(`user "${opts.user}" not found in kubeconfig`);
      if (ctx) (ctx as { user: string }).user = opts.user;
    }
  } catch (err) {
    if (err instanceof PluginError) throw err;
    throw new PluginError(`cannot load kubeconfig: ${(err as Error).message}`);
  }
  if (!kc.getCurrentCluster()) throw new PluginError("no cluster in the kubeconfig's current context");
  const custom = kc.makeApiClient(CustomObjectsApi);
  const base = { group: GROUP, version: VERSION, plural: PLURAL };
  const fail = (what: string, err: unknown): never => {
    const c = code(err);
    if (c === 404) throw new PluginError(`${what}: not found`);
    if (c === 403) throw new PluginError(`${what}: refused by the API server: ${apiMessage(err)}`);
    if (c === 422) throw new PluginError(`${what}: refused by the API server: ${apiMessage(err)}`);
    throw new PluginError(`${what}: ${apiMessage(err)}`);
  };

  const backend: Backend = {
    kind: "kubernetes",
    async defaultNamespace() {
      return kc.getContextObject(kc.getCurrentContext())?.namespace || "default";
    },
    async list(namespace) {
      try {
        const res = (await (namespace
          ? custom.listNamespacedCustomObject({ ...base, namespace })
          : custom.listClusterCustomObject(base))) as KubernetesListObject<AccessRequest>;
        return res.items;
      } catch (err) {
        if (code(err) === 404 && String((err as ApiException<unknown>).body).includes("page not found"))
          throw new PluginError("the AccessRequest CRD is not installed (kubectl apply -f crds/)");
        return fail(`list access requests${namespace ? ` in ${namespace}` : ""}`, err);
      }
    },
    async get(name, namespace) {
      try {
        return (await custom.getNamespacedCustomObject({ ...base, namespace, name })) as AccessRequest;
      } catch (err) {
        if (code(err) === 404)
          throw new PluginError(`access request ${name} not found in namespace ${namespace}`);
        return fail(`get access request ${namespace}/${name}`, err);
      }
    },
    async whoami() {
      try {
        const review = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
          body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
        });
        const name = review.status?.userInfo?.username;
        if (!name) throw new PluginError("the API server did not say who you are (SelfSubjectReview)");
        return name;
      } catch (err) {
        if (err instanceof PluginError) throw err;
        return fail("find out who you are (SelfSubjectReview)", err);
      }
    },
    async decide(name, namespace, kind, user, text) {
      // Optimistic concurrency: read, append, write back on that resourceVersion; on a conflict
      // (someone else decided meanwhile) read again and re-check.
      for (let attempt = 1; ; attempt++) {
        const obj = await backend.get(name, namespace);
        checkDecidable(obj, kind, user);
        const time = new Date().toISOString();
        const status = { ...obj.status };
        if (kind === "approve")
          status.approvals = [
            ...(status.approvals ?? []),
            { user, time, ...(text ? { comment: text } : {}) },
          ];
        else status.denials = [...(status.denials ?? []), { user, time, ...(text ? { reason: text } : {}) }];
        try {
          return (await custom.replaceNamespacedCustomObjectStatus({
            ...base,
            namespace,
            name,
            body: { ...obj, status },
          })) as AccessRequest;
        } catch (err) {
          if (code(err) === 409 && attempt < 6) {
            await new Promise((r) => setTimeout(r, 50 * attempt + Math.random() * 100));
            continue;
          }
          return fail(`${kind} access request ${namespace}/${name}`, err);
        }
      }
    },
    async grants(namespace) {
      const now = Date.now();
      return (await backend.list(namespace))
        .filter(
          (o) =>
            o.status?.phase === "Approved" &&
            o.status.grantExpiresAt &&
            Date.parse(o.status.grantExpiresAt) > now,
        )
        .map((o) => ({
          namespace: o.metadata.namespace ?? "",
          name: o.metadata.name ?? "",
          requester: requesterOf(o),
          connection: o.spec.connection,
          rule: o.spec.rule,
          approvers: (o.status?.approvals ?? []).flatMap((a) => (a.user ? [a.user] : [])),
          expiresAt: o.status?.grantExpiresAt ?? "",
        }));
    },
  };
  return backend;
}

/** Client-side checks with friendly messages; the API server (admission policy) has the last word. */
export function checkDecidable(obj: AccessRequest, kind: DecisionKind, user: string): void {
  const name = obj.metadata.name;
  const phase = obj.status?.phase ?? "Pending";
  if (phase !== "Pending")
    throw new PluginError(`access request ${name} is ${phase}; it takes no more decisions`);
  if ((obj.status?.approvals ?? []).some((a) => a.user === user))
    throw new PluginError(
      `you (${user}) already approved ${name}; another approver must approve it too (distinct users count)`,
    );
  if ((obj.status?.denials ?? []).some((d) => d.user === user))
    throw new PluginError(`you (${user}) already denied ${name}`);
  if (kind === "approve" && obj.spec.requester.user === user)
    throw new PluginError(`you (${user}) requested ${name} and cannot approve it yourself`);
}

export function requesterOf(o: AccessRequest): string {
  return o.spec.requester.user ?? o.spec.requester.serviceAccount;
}

export interface SidecarOptions {
  url: string;
  /** Which approver of the credentials file to decide as, when it holds several. */
  as?: string;
  /** Approver credentials (default: AIRLOCK_APPROVER_TOKEN_FILE, else ~/.config/airlock/approver-tokens). */
  credentialsFile?: string;
}

export function sidecarBackend(opts: SidecarOptions): Backend {
  let base: URL;
  try {
    base = new URL(opts.url.endsWith("/") ? opts.url : `${opts.url}/`);
  } catch {
    throw new PluginError(`--sidecar ${opts.url} is not a URL (e.g. http://127.0.0.1:15990)`);
  }
  async function call<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
    let res: Response;
    try {
      res = await fetch(new URL(path, base), {
        method,
        ...(body !== undefined
          ? {
              headers: {
                "content-type": "application/json",
                ...(token ? { authorization: `Bearer ${token}` } : {}),
              },
              body: JSON.stringify(body),
            }
          : {}),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new PluginError(`no sidecar answers at ${base.origin}: ${apiMessage(err)}`);
    }
    const text = await res.text();
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = { error: text.trim() };
    }
    if (!res.ok) {
      const msg = (value as { error?: string }).error ?? `HTTP ${res.status}`;
      throw new PluginError(res.status === 404 && path.startsWith("approvals/") ? msg : `sidecar: ${msg}`);
    }
    return value as T;
  }
  const credentialsFile = opts.credentialsFile ?? defaultApproverTokenFile();
  let credential: ApproverCredential | undefined;
  // Standalone has no authenticator: the approver is whoever holds a token from the sidecar's
  // owner-only credentials file, and the sidecar takes the name from the token, not from us.
  const approver = (): ApproverCredential => {
    if (credential) return credential;
    let all: ApproverCredential[];
    try {
      all = readApproverCredentials(credentialsFile);
    } catch (e) {
      if (e instanceof CredentialFileError)
        throw new PluginError(
          `${e.message}\n(the sidecar creates it at start; point at it with --approver-token-file FILE or AIRLOCK_APPROVER_TOKEN_FILE)`,
        );
      throw e;
    }
    const names = all.map((c) => c.user);
    const chosen = opts.as ? all.find((c) => c.user === opts.as) : all.length === 1 ? all[0] : undefined;
    if (!chosen)
      throw new PluginError(
        opts.as
          ? `no approver credential for ${opts.as} in ${credentialsFile} (it has: ${names.join(", ") || "none"})`
          : `${credentialsFile} holds several approvers (${names.join(", ")}): choose one with --as NAME`,
      );
    credential = chosen;
    return chosen;
  };
  let ns: string | undefined;
  const backend: Backend = {
    kind: "sidecar",
    async defaultNamespace() {
      ns ??= (await call<{ namespace?: string }>("GET", "approvals")).namespace ?? "default";
      return ns;
    },
    async list() {
      return (await call<{ items: AccessRequest[] }>("GET", "approvals")).items;
    },
    async get(name) {
      return call<AccessRequest>("GET", `approvals/${encodeURIComponent(name)}`);
    },
    async whoami() {
      return approver().user;
    },
    async decide(name, _namespace, kind, user, text) {
      const obj = await backend.get(name, _namespace);
      checkDecidable(obj, kind, user);
      const body = kind === "approve" ? { user, comment: text } : { user, reason: text };
      return call<AccessRequest>(
        "POST",
        `approvals/${encodeURIComponent(name)}/${kind}`,
        body,
        approver().token,
      );
    },
    async grants() {
      const res = await call<{
        items: {
          request: string;
          namespace: string;
          requester: { serviceAccount: string; user?: string };
          connection: string;
          rule: string;
          approvers: string[];
          expiresAt: string;
        }[];
      }>("GET", "approvals/grants");
      return res.items.map((g) => ({
        namespace: g.namespace,
        name: g.request,
        requester: g.requester.user ?? g.requester.serviceAccount,
        connection: g.connection,
        rule: g.rule,
        approvers: g.approvers,
        expiresAt: g.expiresAt,
      }));
    },
  };
  return backend;
}
