// Keeps the pod CA in step with the policies and the clock. Its name constraints are the HTTPS
// hosts of the HTTP connections in force; when that host set changes a new CA (new key) is made.
// Renewal runs ahead of expiry, as Istio's agent rotates certificates: next to the CA in force the
// bundle always carries its successor (minted ahead, not yet signing), so a client that loaded the
// bundle at any time trusts the leaves of the next generation too. At a fraction of its lifetime
// (2/3, minus a little jitter) the successor takes over, a new successor is published, and the old
// CA stays in the bundle (certificate only; its key is dropped) until its notAfter — every leaf it
// signed ends by then. Until the first CA exists (or with no HTTPS hosts) there is no interception.
import type { Logger } from "pino";
import type { PolicySet } from "../../../policy/compile.ts";
import { isPassthrough } from "../../../policy/passthrough.ts";
import type { PolicyStore } from "../../../runtime/policy-store.ts";
import type { Metrics } from "../../../telemetry/metrics.ts";
import { expiryMargin } from "./ca-timing.ts";
import type { PodCa } from "./pod-ca.ts";
import { writeTrustBundle } from "./trust-bundle.ts";

/** Hosts of HTTP connections whose TLS the sidecar terminates (what CONNECT authorities are matched to). */
export function httpsHosts(set: PolicySet): string[] {
  const hosts = new Set<string>();
  for (const c of set.connections.values())
    if (c.spec.protocol === "http" && c.spec.tls?.mode !== "disable" && !isPassthrough(c.spec))
      hosts.add(c.spec.target.host.toLowerCase());
  return [...hosts].sort();
}

/**
 * Names of passthrough connections (host and aliases): the pod CA never signs for them, even when
 * another connection names the same host (the CA lists them as excluded subtrees and `leaf()`
 * refuses them), so a pinned client's TLS can never be terminated, only relayed.
 */
export function passthroughNames(set: PolicySet): string[] {
  const names = new Set<string>();
  for (const c of set.connections.values())
    if (isPassthrough(c.spec))
      for (const h of [c.spec.target.host, ...(c.spec.target.aliases ?? [])]) names.add(h.toLowerCase());
  return [...names].sort();
}

/**
 * Names the pod CA is constrained to: the HTTPS hosts, and the names of PostgreSQL connections
 * that serve TLS to the agent (agentTls: allow or require), less the passthrough names.
 */
export function podCaHosts(set: PolicySet): string[] {
  const hosts = new Set(httpsHosts(set));
  for (const c of set.connections.values())
    if (c.spec.protocol === "postgres" && (c.spec.agentTls?.mode ?? "disable") !== "disable")
      for (const h of [c.spec.target.host, ...(c.spec.target.aliases ?? [])]) hosts.add(h.toLowerCase());
  for (const n of passthroughNames(set)) hosts.delete(n);
  return [...hosts].sort();
}

export interface PodCaKeeper {
  /** The CA that signs leaves now; undefined without HTTPS hosts or once it is too close to expiry. */
  current(): PodCa | undefined;
  /** The successor, already in the trust bundle, that takes over at the next rotation. */
  next(): PodCa | undefined;
  /** The CA certificates (PEM) in the trust bundle: in force, successor, retired ones not yet expired. */
  trusted(): string[];
  /** Settles once the CA for the policies seen so far exists and the bundle is written. */
  ready(): Promise<void>;
  stop(): void;
}

export interface PodCaKeeperOptions {
  policies: PolicyStore;
  logger: Logger;
  /** Where the trust bundle (pod CAs + system roots) is written; absent: not written. */
  bundlePath?: string;
  label?: string;
  /** How long a CA signs leaves (its validity from taking over to notAfter). Default 24 h. */
  lifetimeMs?: number;
  /** Leaf lifetime cap (leaves never outlive their CA). Default 24 h. */
  leafLifetimeMs?: number;
  /** Fraction of the lifetime after which the successor takes over. Default 2/3. */
  rotateFraction?: number;
  /** Up to this fraction of the lifetime is taken off the rotation point at random. Default 0.05. */
  jitterFraction?: number;
  /** Clock (ms since the epoch), injectable for tests. Default `Date.now`. */
  now?: () => number;
  metrics?: Pick<Metrics, "podCaRotations" | "podCaNotAfter" | "trustBundleCas">;
}

type Reason = "start" | "hosts" | "schedule";
interface Retired {
  certPem: string;
  notAfter: number;
  serialNumber: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Retired CAs kept in the bundle at most (host-set churn must not grow it without bound); the newest stay. */
const MAX_RETIRED = 8;

export function startPodCaKeeper(opts: PodCaKeeperOptions): PodCaKeeper {
  const now = opts.now ?? Date.now;
  const lifetimeMs = opts.lifetimeMs ?? DAY_MS;
  const rotateFraction = opts.rotateFraction ?? 2 / 3;
  const jitterFraction = opts.jitterFraction ?? 0.05;
  if (
    !(rotateFraction > 0 && rotateFraction < 1) ||
    !(jitterFraction >= 0 && jitterFraction < rotateFraction)
  )
    throw new Error(
      `pod CA keeper: rotateFraction must be in (0, 1) and jitterFraction in [0, rotateFraction), got ${rotateFraction} and ${jitterFraction}`,
    );
  // A failed mint is retried this soon (the CA in force keeps serving while it is valid).
  const retryMs = Math.max(1000, Math.min(30_000, Math.floor(lifetimeMs / 20)));

  let hosts: string[] = [];
  let excluded: string[] = [];
  let key = "";
  let ca: PodCa | undefined;
  let rotateAt = Number.POSITIVE_INFINITY;
  let successor: PodCa | undefined;
  let retired: Retired[] = [];
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let chain: Promise<void> = Promise.resolve();

  // From the certificate's own notAfter (whole seconds, so up to 1 s short of the lifetime), and
  // always before the CA stops serving (PodCa refuses within the margin of its end).
  const margin = expiryMargin(lifetimeMs);
  const rotationPoint = (from: number, ca: PodCa) => {
    const end = ca.notAfter.getTime();
    const point = from + Math.floor((end - from) * (rotateFraction - jitterFraction * Math.random()));
    return Math.min(point, end - 2 * margin);
  };
  // The X.509 library (~13 MB resident) loads with the first CA: a policy without HTTPS hosts or
  // agent-facing TLS never mints one.
  const mint = async (activeFrom: number) =>
    (await import("./pod-ca.ts")).PodCa.create({
      hosts,
      excluded,
      lifetimeMs,
      activeFrom,
      now,
      ...(opts.label ? { label: opts.label } : {}),
      ...(opts.leafLifetimeMs ? { leafLifetimeMs: opts.leafLifetimeMs } : {}),
    });
  const trusted = (): string[] => [
    ...(ca ? [ca.certPem] : []),
    ...(successor ? [successor.certPem] : []),
    ...retired.map((r) => r.certPem),
  ];
  const publish = async (pems: string[]) => {
    if (opts.bundlePath) await writeTrustBundle(opts.bundlePath, pems.length ? pems.join("\n") : undefined);
    opts.metrics?.trustBundleCas.set(pems.length);
  };
  /** `retired` plus `old` (certificate only: its key goes with the PodCa), the oldest beyond the cap dropped. */
  const retire = (old: PodCa | undefined): Retired[] => {
    const all = old
      ? [
          ...retired,
          { certPem: old.certPem, notAfter: old.notAfter.getTime(), serialNumber: old.serialNumber },
        ]
      : retired;
    for (const r of all.slice(0, Math.max(0, all.length - MAX_RETIRED)))
      opts.logger.warn(
        { serial: r.serialNumber },
        "retired pod CA dropped early: too many in the trust bundle",
      );
    return all.slice(-MAX_RETIRED);
  };
  const count = (reason: Reason, result: "ok" | "failed") =>
    opts.metrics?.podCaRotations.inc({ reason, result });

  const schedule = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (stopped) return;
    const due = Math.min(rotateAt, ...retired.map((r) => r.notAfter));
    if (!Number.isFinite(due)) return;
    timer = setTimeout(() => enqueue(tick), Math.min(MAX_TIMER_MS, Math.max(0, due - now())));
    timer.unref();
  };
  const enqueue = (work: () => Promise<void>) => {
    chain = chain.then(work).catch((err: unknown) => {
      opts.logger.error({ err: String(err) }, "pod CA keeper failed");
    });
  };

  /** A new CA for a new host set (or the first one): published, then in force at once. */
  const replace = async (reason: Reason) => {
    if (hosts.length === 0) {
      retired = retire(ca);
      ca = undefined;
      successor = undefined;
      rotateAt = Number.POSITIVE_INFINITY;
      opts.metrics?.podCaNotAfter.set(0);
      // The agents' trust variables point at the bundle: it must exist, with the roots at least.
      await publish(trusted()).catch((err: unknown) =>
        opts.logger.error({ err: String(err) }, "trust bundle could not be written"),
      );
      return;
    }
    try {
      const t = now();
      const made = await mint(t);
      const at = rotationPoint(t, made);
      const next = await mint(at);
      // The old successor never signed anything: dropped. The old CA stays trusted until it expires.
      const keep = retire(ca);
      await publish([made.certPem, next.certPem, ...keep.map((r) => r.certPem)]);
      [ca, successor, rotateAt, retired] = [made, next, at, keep];
      opts.metrics?.podCaNotAfter.set(made.notAfter.getTime() / 1000);
      count(reason, "ok");
      opts.logger.info(
        {
          reason,
          hosts,
          ...(excluded.length ? { excluded } : {}),
          serial: made.serialNumber,
          notAfter: made.notAfter.toISOString(),
          rotateAt: new Date(at).toISOString(),
          next: next.serialNumber,
        },
        "pod CA minted",
      );
    } catch (err) {
      // Fail closed: without a CA no TLS is intercepted, and CONNECTs without a tunnel rule stay refused.
      [ca, successor, rotateAt] = [undefined, undefined, Number.POSITIVE_INFINITY];
      opts.metrics?.podCaNotAfter.set(0);
      count(reason, "failed");
      opts.logger.error({ err: String(err), hosts }, "pod CA could not be minted");
    }
  };

  /** The scheduled step: the successor takes over when due; expired retired CAs leave the bundle. */
  const tick = async () => {
    if (stopped) return;
    const t = now();
    if (ca && t >= rotateAt) {
      try {
        // Normally the successor was published one generation ago; if that failed, publish one now.
        const incoming = successor ?? (await mint(t));
        const at = rotationPoint(t, incoming);
        const next = await mint(at);
        const keep = retire(ca);
        await publish([incoming.certPem, next.certPem, ...keep.map((r) => r.certPem)]);
        const old = ca;
        [ca, successor, rotateAt, retired] = [incoming, next, at, keep];
        opts.metrics?.podCaNotAfter.set(incoming.notAfter.getTime() / 1000);
        count("schedule", "ok");
        opts.logger.info(
          {
            serial: incoming.serialNumber,
            notAfter: incoming.notAfter.toISOString(),
            rotateAt: new Date(at).toISOString(),
            next: next.serialNumber,
            previous: old.serialNumber,
            previousTrustedUntil: old.notAfter.toISOString(),
          },
          "pod CA rotated",
        );
      } catch (err) {
        // The CA in force keeps serving while it is valid (PodCa refuses near its expiry); retry soon.
        rotateAt = t + retryMs;
        count("schedule", "failed");
        opts.logger.error(
          { err: String(err), serial: ca.serialNumber, notAfter: ca.notAfter.toISOString() },
          "pod CA rotation failed; retrying",
        );
      }
    }
    const expired = retired.filter((r) => r.notAfter <= t);
    if (expired.length > 0) {
      retired = retired.filter((r) => r.notAfter > t);
      try {
        await publish(trusted());
        for (const r of expired)
          opts.logger.info(
            { serial: r.serialNumber, notAfter: new Date(r.notAfter).toISOString() },
            "expired pod CA removed from the trust bundle",
          );
      } catch (err) {
        opts.logger.error({ err: String(err) }, "trust bundle could not be written");
      }
    }
    ca?.dropExpiredLeaves();
    schedule();
  };

  const refresh = (set: PolicySet) => {
    const nextHosts = podCaHosts(set);
    const nextExcluded = passthroughNames(set);
    // Without hosts there is no CA, whatever is excluded; with hosts, a changed exclusion re-mints.
    const next = nextHosts.length ? `${nextHosts.join(",")}|${nextExcluded.join(",")}` : "";
    if (next === key) return;
    const reason: Reason = key === "" && !ca ? "start" : "hosts";
    key = next;
    enqueue(async () => {
      if (key !== next) return; // superseded while queued
      hosts = nextHosts;
      excluded = nextExcluded;
      await replace(reason);
      schedule();
    });
  };
  refresh(opts.policies.current());
  // An empty first host set still writes the bundle (roots only).
  if (key === "") enqueue(() => replace("start"));
  const off = opts.policies.onChange(refresh);
  return {
    current: () => (ca?.usable() ? ca : undefined),
    next: () => successor,
    trusted,
    ready: () => chain,
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      off();
    },
  };
}
