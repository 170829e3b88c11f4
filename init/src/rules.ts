// The egress-capture rule set, as a pure function of the configuration (golden-tested in
// init/testdata). Output is iptables-save syntax loaded with `iptables-restore --noflush`, which
// applies each table atomically and leaves everybody else's rules alone.
//
// nat table (TCP capture), evaluated for the first packet of every locally originated TCP
// connection, in this order (Istio's, see FIELD-NOTES):
//   OUTPUT           -I 1: -p tcp -> AIRLOCK_OUTPUT
//   AIRLOCK_OUTPUT   excluded ports RETURN
//                    -d 127.0.0.1/32 (::1/128) RETURN          loopback is not egress
//                    --uid-owner PROXY RETURN, --gid-owner PROXY RETURN   the sidecar goes out
//                    DNS over TCP to the pod's nameservers RETURN
//                    excluded CIDRs RETURN
//                    all other TCP (or only --include-ports) -> AIRLOCK_REDIRECT
//   AIRLOCK_REDIRECT REDIRECT --to-ports 15900 (to 127.0.0.1 / ::1, where the sidecar listens)
//
// filter table (everything that is not TCP), unless --non-tcp allow:
//   OUTPUT           -I 1: ! -p tcp -> AIRLOCK_NON_TCP
//   AIRLOCK_NON_TCP  loopback, proxy UID/GID, DNS over UDP (any server), excluded ports (UDP) and
//                    CIDRs, replies/errors of tracked flows (ESTABLISHED,RELATED), IPv6 neighbour
//                    discovery: RETURN; everything else REJECT. The sidecar only understands TCP,
//                    so UDP (QUIC/HTTP3 included), ICMP echo and other protocols would otherwise be
//                    a way around it. DNS is left alone: resolving names is harmless to allow and
//                    restricting it to the nameserver would not stop tunnelling through it.
import { type Cidr, parseCidr } from "./net.ts";

export const CHAIN_OUTPUT = "AIRLOCK_OUTPUT";
export const CHAIN_REDIRECT = "AIRLOCK_REDIRECT";
export const CHAIN_NON_TCP = "AIRLOCK_NON_TCP";
/** Every chain airlock-init has ever created; used to find and clean up stale state. */
export const OWN_CHAIN_PREFIX = "AIRLOCK_";

export type Family = 4 | 6;
export type Table = "nat" | "filter";
export type NonTcpMode = "reject" | "allow";

export interface CaptureConfig {
  proxyUid: number;
  proxyGid: number;
  /** Where REDIRECT sends captured TCP (the sidecar's transparent listener). */
  redirectPort: number;
  excludeCidrs: readonly Cidr[];
  /** Destination ports never captured (TCP; also allowed for UDP when non-TCP is rejected). */
  excludePorts: readonly number[];
  /** Capture only these TCP ports; undefined captures every port. */
  includePorts?: readonly number[];
  /** The pod's nameservers: DNS over TCP to them is not captured (UDP DNS is never captured). */
  dnsServers: readonly string[];
  nonTcp: NonTcpMode;
}

export interface TableRules {
  table: Table;
  /** Chains we own in this table, declared (and so flushed) on every run. */
  chains: readonly string[];
  /** The rule that sends OUTPUT into our chain, without the leading `-I OUTPUT 1`. */
  jump: string;
  /** Complete `-A CHAIN ...` lines. */
  rules: readonly string[];
}

export interface FamilyRules {
  family: Family;
  tables: readonly TableRules[];
}

/** What is installed now (from `iptables-save`): our chains and the OUTPUT rules jumping to them. */
export interface ExistingState {
  chains: Partial<Record<Table, readonly string[]>>;
  /** Verbatim `-A OUTPUT ... -j AIRLOCK_...` lines, so they can be deleted by exact spec. */
  jumps: Partial<Record<Table, readonly string[]>>;
}

const comment = (text: string) => `-m comment --comment "airlock: ${text}"`;

const loopback = (family: Family) => (family === 4 ? "127.0.0.1/32" : "::1/128");
const isFamily = (address: string, family: Family) => (family === 4) === !address.includes(":");

function natRules(config: CaptureConfig, family: Family): TableRules {
  const out: string[] = [];
  const add = (spec: string) => out.push(`-A ${CHAIN_OUTPUT} ${spec}`);
  for (const port of config.excludePorts)
    add(`-p tcp -m tcp --dport ${port} ${comment(`excluded port ${port}`)} -j RETURN`);
  add(`-d ${loopback(family)} -p tcp ${comment("loopback is not egress")} -j RETURN`);
  add(
    `-m owner --uid-owner ${config.proxyUid} ${comment(`proxy UID ${config.proxyUid} goes out directly`)} -j RETURN`,
  );
  add(
    `-m owner --gid-owner ${config.proxyGid} ${comment(`proxy GID ${config.proxyGid} goes out directly`)} -j RETURN`,
  );
  for (const server of config.dnsServers.filter((s) => isFamily(s, family)))
    add(
      `-d ${parseCidr(server).text} -p tcp -m tcp --dport 53 ${comment("DNS over TCP to the pod nameserver")} -j RETURN`,
    );
  for (const cidr of config.excludeCidrs.filter((c) => c.family === family))
    add(`-d ${cidr.text} ${comment(`excluded CIDR ${cidr.text}`)} -j RETURN`);
  if (config.includePorts) {
    for (const port of config.includePorts)
      add(`-p tcp -m tcp --dport ${port} ${comment(`capture port ${port}`)} -j ${CHAIN_REDIRECT}`);
  } else {
    add(`-p tcp ${comment("capture all other TCP")} -j ${CHAIN_REDIRECT}`);
  }
  out.push(
    `-A ${CHAIN_REDIRECT} -p tcp ${comment(`to the sidecar capture port ${config.redirectPort}`)} -j REDIRECT --to-ports ${config.redirectPort}`,
  );
  return {
    table: "nat",
    chains: [CHAIN_OUTPUT, CHAIN_REDIRECT],
    jump: `-p tcp ${comment("capture outbound TCP")} -j ${CHAIN_OUTPUT}`,
    rules: out,
  };
}

/** ICMPv6 the kernel itself must send for IPv6 to work at all (RFC 4890 "must not be dropped"). */
const ICMPV6_ALLOWED: readonly [number, string][] = [
  [133, "router solicitation"],
  [135, "neighbour solicitation"],
  [136, "neighbour advertisement"],
  [143, "MLDv2 report"],
];

function filterRules(config: CaptureConfig, family: Family): TableRules {
  const out: string[] = [];
  const add = (spec: string) => out.push(`-A ${CHAIN_NON_TCP} ${spec}`);
  add(`-o lo ${comment("loopback is not egress")} -j RETURN`);
  add(
    `-m owner --uid-owner ${config.proxyUid} ${comment(`proxy UID ${config.proxyUid} goes out directly`)} -j RETURN`,
  );
  add(
    `-m owner --gid-owner ${config.proxyGid} ${comment(`proxy GID ${config.proxyGid} goes out directly`)} -j RETURN`,
  );
  add(`-p udp -m udp --dport 53 ${comment("DNS over UDP")} -j RETURN`);
  for (const port of config.excludePorts)
    add(`-p udp -m udp --dport ${port} ${comment(`excluded port ${port}`)} -j RETURN`);
  for (const cidr of config.excludeCidrs.filter((c) => c.family === family))
    add(`-d ${cidr.text} ${comment(`excluded CIDR ${cidr.text}`)} -j RETURN`);
  add(
    `-m conntrack --ctstate RELATED,ESTABLISHED ${comment("replies and errors of tracked flows")} -j RETURN`,
  );
  if (family === 6)
    for (const [type, name] of ICMPV6_ALLOWED)
      add(`-p ipv6-icmp -m icmp6 --icmpv6-type ${type} ${comment(name)} -j RETURN`);
  add(
    `${comment("non-TCP egress is refused (fail closed)")} -j REJECT --reject-with ${
      family === 4 ? "icmp-port-unreachable" : "icmp6-port-unreachable"
    }`,
  );
  return {
    table: "filter",
    chains: [CHAIN_NON_TCP],
    jump: `! -p tcp ${comment("non-TCP egress")} -j ${CHAIN_NON_TCP}`,
    rules: out,
  };
}

/** The rule set for one address family. */
export function buildRules(config: CaptureConfig, family: Family): FamilyRules {
  const tables = [natRules(config, family)];
  if (config.nonTcp === "reject") tables.push(filterRules(config, family));
  return { family, tables };
}

/** No rules at all: rendering it against the existing state removes everything airlock-init made. */
export function emptyRules(family: Family): FamilyRules {
  return { family, tables: [] };
}

const TABLE_ORDER: readonly Table[] = ["nat", "filter"];

/**
 * iptables-restore --noflush input that takes the tables from `existing` to `desired`:
 * declaring a user chain flushes it, our old OUTPUT jumps are deleted by their exact spec (so a
 * re-run never stacks a second jump), and chains we no longer want are removed.
 */
export function renderRestore(
  desired: FamilyRules,
  existing: ExistingState = { chains: {}, jumps: {} },
): string {
  const lines: string[] = [];
  for (const table of TABLE_ORDER) {
    const want = desired.tables.find((t) => t.table === table);
    const haveChains = existing.chains[table] ?? [];
    const haveJumps = existing.jumps[table] ?? [];
    if (!want && haveChains.length === 0 && haveJumps.length === 0) continue;
    const wantChains = want?.chains ?? [];
    const stale = haveChains.filter((c) => !wantChains.includes(c));
    lines.push(`*${table}`);
    for (const chain of [...wantChains, ...stale]) lines.push(`:${chain} - [0:0]`);
    for (const jump of haveJumps) lines.push(jump.replace(/^-A /, "-D "));
    for (const chain of stale) lines.push(`-X ${chain}`);
    if (want) {
      lines.push(`-I OUTPUT 1 ${want.jump}`);
      lines.push(...want.rules);
    }
    lines.push("COMMIT");
  }
  return lines.length ? `${lines.join("\n")}\n` : "";
}

/** Reads our chains and OUTPUT jumps out of `iptables-save` output. */
export function parseExisting(save: string): ExistingState {
  const chains: Partial<Record<Table, string[]>> = {};
  const jumps: Partial<Record<Table, string[]>> = {};
  let table: Table | undefined;
  for (const line of save.split("\n")) {
    if (line.startsWith("*")) {
      const name = line.slice(1).trim();
      table = name === "nat" || name === "filter" ? name : undefined;
      continue;
    }
    if (!table) continue;
    const decl = /^:(\S+) /.exec(line);
    if (decl?.[1]?.startsWith(OWN_CHAIN_PREFIX)) chains[table] = [...(chains[table] ?? []), decl[1]];
    if (/^-A OUTPUT .*-j AIRLOCK_\S+\s*$/.test(line))
      jumps[table] = [...(jumps[table] ?? []), line.trimEnd()];
  }
  return { chains, jumps };
}

export function renderDryRun(config: CaptureConfig, families: readonly Family[]): string {
  const parts: string[] = [];
  for (const family of families) {
    const tool = family === 4 ? "iptables" : "ip6tables";
    parts.push(`# ${tool}-restore --noflush (IPv${family})\n`);
    parts.push(renderRestore(buildRules(config, family)));
  }
  return parts.join("");
}
