// Keeps the pod CA in step with the policies: its name constraints are the HTTPS hosts of the
// HTTP connections in force; when that host set changes a new CA (new key) is made and the trust
// bundle rewritten. Until the first CA exists (or with no HTTPS hosts) there is no interception.
import type { Logger } from "pino";
import type { PolicySet } from "../../../policy/compile.ts";
import type { PolicyStore } from "../../../runtime/policy-store.ts";
import { PodCa } from "./pod-ca.ts";
import { writeTrustBundle } from "./trust-bundle.ts";

/** Hosts of HTTP connections that speak TLS upstream (what CONNECT authorities are matched to). */
export function httpsHosts(set: PolicySet): string[] {
  const hosts = new Set<string>();
  for (const c of set.connections.values())
    if (c.spec.protocol === "http" && c.spec.tls?.mode !== "disable")
      hosts.add(c.spec.target.host.toLowerCase());
  return [...hosts].sort();
}

export interface PodCaKeeper {
  current(): PodCa | undefined;
  /** Settles once the CA for the policies seen so far exists and the bundle is written. */
  ready(): Promise<void>;
  stop(): void;
}

export function startPodCaKeeper(opts: {
  policies: PolicyStore;
  logger: Logger;
  /** Where the trust bundle (pod CA + system roots) is written; absent: not written. */
  bundlePath?: string;
  label?: string;
  lifetimeMs?: number;
}): PodCaKeeper {
  let ca: PodCa | undefined;
  let key = "";
  let chain: Promise<void> = Promise.resolve();
  const refresh = (set: PolicySet) => {
    const hosts = httpsHosts(set);
    const next = hosts.join(",");
    if (next === key) return;
    key = next;
    chain = chain.then(async () => {
      if (key !== next) return; // superseded while queued
      if (hosts.length === 0) {
        ca = undefined;
        // The agents' trust variables point at the bundle: it must exist, with the roots at least.
        if (opts.bundlePath)
          await writeTrustBundle(opts.bundlePath, undefined).catch((err: unknown) =>
            opts.logger.error({ err: String(err) }, "trust bundle could not be written"),
          );
        return;
      }
      try {
        const made = await PodCa.create({
          hosts,
          ...(opts.label ? { label: opts.label } : {}),
          ...(opts.lifetimeMs ? { lifetimeMs: opts.lifetimeMs } : {}),
        });
        if (opts.bundlePath) await writeTrustBundle(opts.bundlePath, made.certPem);
        ca = made;
        opts.logger.info({ hosts, notAfter: made.notAfter.toISOString() }, "pod CA minted");
      } catch (err) {
        // Fail closed: without a CA no TLS is intercepted, and CONNECTs without a tunnel rule stay refused.
        ca = undefined;
        opts.logger.error({ err: String(err), hosts }, "pod CA could not be minted");
      }
    });
  };
  refresh(opts.policies.current());
  const off = opts.policies.onChange(refresh);
  return { current: () => ca, ready: () => chain, stop: off };
}
