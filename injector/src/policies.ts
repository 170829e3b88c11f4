// Which AgentAccessPolicies select a pod, and which Secrets they reference.
import type { AgentAccessPolicy, Connection } from "../../api/src/index.ts";
import { selectorMatches } from "../../sidecar/src/policy/selector.ts";

export { selectorMatches };

/** Where the webhook finds the policies of a namespace (the controller's informer cache, or files). */
export interface PolicySource {
  policies(namespace: string): readonly AgentAccessPolicy[];
}

export function staticPolicySource(policies: readonly AgentAccessPolicy[]): PolicySource {
  return {
    policies: (namespace) => policies.filter((p) => (p.metadata?.namespace ?? namespace) === namespace),
  };
}

export function policiesSelecting(
  policies: readonly AgentAccessPolicy[],
  labels: Readonly<Record<string, string>> | undefined,
): AgentAccessPolicy[] {
  return policies
    .filter((p) => selectorMatches(p.spec?.podSelector, labels))
    .sort((a, b) => (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""));
}

/**
 * The first Anthropic connection of `policies`: an HTTP connection to api.anthropic.com (its target
 * or an alias) or answering in the Anthropic error shape, on which the sidecar injects a credential.
 * Without a credential the agent's own key would go upstream, so a placeholder would only break it.
 */
export function anthropicConnection(
  policies: readonly AgentAccessPolicy[],
  apiHost: string,
): { policy: string; connection: string } | undefined {
  for (const p of policies)
    for (const c of p.spec?.connections ?? []) {
      if (c.protocol !== "http" || !c.credentials) continue;
      const hosts = [c.target.host, ...(c.target.aliases ?? [])].map((h) => h.toLowerCase());
      if (hosts.includes(apiHost) || c.errorFormat === "anthropic")
        return { policy: p.metadata?.name ?? "", connection: c.name };
    }
  return undefined;
}

/** A key a connection needs from a Secret. */
export interface SecretKeyReference {
  connection: string;
  secret: string;
  /** Absent when the whole Secret is used and no particular key can be named. */
  key?: string;
  /** Which field asks for it, e.g. `credentials.postgres.passwordKey`. */
  field: string;
}

/** Every Secret key a connection reads, with the CRD defaults applied. */
export function connectionSecretKeys(c: Connection): SecretKeyReference[] {
  const out: SecretKeyReference[] = [];
  const cred = c.credentials;
  if (cred?.secretRef?.name) {
    const secret = cred.secretRef.name;
    const add = (key: string, field: string) => out.push({ connection: c.name, secret, key, field });
    if (c.protocol === "http") add(cred.http?.key ?? "token", "credentials.http.key");
    if (c.protocol === "postgres") {
      add(cred.postgres?.usernameKey ?? "username", "credentials.postgres.usernameKey");
      add(cred.postgres?.passwordKey ?? "password", "credentials.postgres.passwordKey");
    }
    if (c.protocol === "ssh") {
      if (cred.ssh?.privateKeyKey) add(cred.ssh.privateKeyKey, "credentials.ssh.privateKeyKey");
      if (cred.ssh?.certificate?.caKey) add(cred.ssh.certificate.caKey, "credentials.ssh.certificate.caKey");
      if (!cred.ssh?.privateKeyKey && !cred.ssh?.certificate?.caKey)
        out.push({ connection: c.name, secret, field: "credentials.secretRef" });
    }
  }
  if (c.tls?.caSecretRef?.name)
    out.push({
      connection: c.name,
      secret: c.tls.caSecretRef.name,
      key: c.tls.caSecretRef.key,
      field: "tls.caSecretRef",
    });
  if (c.knownHosts?.name)
    out.push({ connection: c.name, secret: c.knownHosts.name, key: c.knownHosts.key, field: "knownHosts" });
  const vaultCa = cred?.vault?.caSecretRef;
  if (vaultCa?.name)
    out.push({
      connection: c.name,
      secret: vaultCa.name,
      key: vaultCa.key,
      field: "credentials.vault.caSecretRef",
    });
  return out;
}

export function policySecretKeys(policy: AgentAccessPolicy): SecretKeyReference[] {
  return (policy.spec?.connections ?? []).flatMap(connectionSecretKeys);
}

/** Secret names referenced by the given policies, sorted and de-duplicated. */
export function referencedSecrets(policies: readonly AgentAccessPolicy[]): string[] {
  return [...new Set(policies.flatMap((p) => policySecretKeys(p).map((r) => r.secret)))].sort();
}

/** Audiences of the service-account tokens the sidecar logs in to Vault with, sorted and de-duplicated. */
export function vaultAudiences(policies: readonly AgentAccessPolicy[]): string[] {
  const audiences = policies.flatMap((p) =>
    (p.spec?.connections ?? []).flatMap((c) => c.credentials?.vault?.auth.audience ?? []),
  );
  return [...new Set(audiences)].sort();
}
