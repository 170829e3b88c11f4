// Command line of airlock-init. The injector builds it from pod annotations
// (airlock.dev/exclude-outbound-cidrs → --exclude-cidrs, airlock.dev/exclude-outbound-ports →
// --exclude-ports, airlock.dev/include-outbound-ports → --include-ports); every value is
// validated here so a bad annotation fails the pod's init with a message that names it.
import { isIPv4, isIPv6 } from "node:net";
import { parseArgs } from "node:util";
import { ArgError, parseCidrList, parsePortList, splitList } from "./net.ts";
import type { CaptureConfig, NonTcpMode } from "./rules.ts";

/** Defaults mirror injector/src/names.ts (PROXY_UID, PROXY_GID, PORTS.capture). */
export const DEFAULT_PROXY_UID = 1717;
export const DEFAULT_PROXY_GID = 1717;
export const DEFAULT_REDIRECT_PORT = 15900;

export type Ipv6Mode = "auto" | "on" | "off";
export type BackendChoice = "auto" | "nft" | "legacy";

export interface InitOptions {
  config: Omit<CaptureConfig, "dnsServers">;
  /** "auto" reads /etc/resolv.conf (the pod's, as the kubelet wrote it for every container). */
  dnsServers: "auto" | readonly string[];
  ipv6: Ipv6Mode;
  backend: BackendChoice;
  dryRun: boolean;
  /** Remove everything airlock-init installed instead of installing. */
  clean: boolean;
}

export type Command = { kind: "help" } | { kind: "run"; options: InitOptions };

export const USAGE = `Usage: airlock-init [options]

Installs the Airlock egress-capture rules (iptables and ip6tables, nat table chains AIRLOCK_OUTPUT
and AIRLOCK_REDIRECT; filter table chain AIRLOCK_NON_TCP) in the current network namespace, so that
every outbound TCP connection of the pod reaches the Airlock sidecar's transparent listener.
Needs CAP_NET_ADMIN and CAP_NET_RAW. Re-running replaces the previous rules (idempotent).

Options:
  --proxy-uid UID          UID of the sidecar; its traffic is not captured (default ${DEFAULT_PROXY_UID})
  --proxy-gid GID          GID of the sidecar; its traffic is not captured (default ${DEFAULT_PROXY_GID})
  --redirect-port PORT     transparent listener port of the sidecar (default ${DEFAULT_REDIRECT_PORT})
  --exclude-cidrs LIST     comma-separated CIDRs (IPv4 or IPv6) never captured
  --exclude-ports LIST     comma-separated destination ports never captured (TCP, and UDP when
                           non-TCP egress is refused)
  --include-ports LIST     capture only these TCP ports ("*" or empty: all ports, the default)
  --dns-servers auto|none|LIST
                           nameservers whose DNS over TCP (port 53) is not captured; "auto" reads
                           /etc/resolv.conf (default auto). DNS over UDP is never captured.
  --non-tcp reject|allow   what happens to egress that is not TCP: reject (default) refuses it
                           except DNS, loopback, the proxy and exclusions; allow leaves it alone
  --ipv6 auto|on|off       install ip6tables rules: auto when the kernel has IPv6 (default auto).
                           off leaves IPv6 egress uncaptured: only for IPv6-less pods
  --iptables-backend auto|nft|legacy
                           auto uses the backend that already holds rules, else nft (default auto)
  --dry-run                print the rules (iptables-restore input) and exit; changes nothing
  --clean                  remove the Airlock chains and jumps instead of installing them
  -h, --help               show this help
`;

function intOption(value: string, name: string, min: number, max: number, why = ""): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min || Number(value) > max)
    throw new ArgError(`--${name}: "${value}" must be an integer from ${min} to ${max}${why}`);
  return Number(value);
}

function oneOf<T extends string>(value: string, name: string, allowed: readonly T[]): T {
  const found = allowed.find((a) => a === value);
  if (found === undefined)
    throw new ArgError(`--${name}: "${value}" must be one of ${allowed.map((a) => `"${a}"`).join(", ")}`);
  return found;
}

/** Parses argv (without node and script); throws ArgError with a message meant for the user. */
export function parseCommand(argv: readonly string[]): Command {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new ArgError(message.replace(/\. To specify a positional argument.*$/s, ""));
  }
  const v = parsed.values;
  if (v.help) return { kind: "help" };
  if (parsed.positionals.length)
    throw new ArgError(`unexpected argument "${parsed.positionals[0]}" (options start with --)`);

  const root = " (0 would exempt root)";
  const proxyUid = intOption(v["proxy-uid"] ?? String(DEFAULT_PROXY_UID), "proxy-uid", 1, 4294967294, root);
  const proxyGid = intOption(v["proxy-gid"] ?? String(DEFAULT_PROXY_GID), "proxy-gid", 1, 4294967294, root);
  const redirectPort = intOption(
    v["redirect-port"] ?? String(DEFAULT_REDIRECT_PORT),
    "redirect-port",
    1,
    65535,
  );
  const excludeCidrs = withOption("exclude-cidrs", () => parseCidrList(v["exclude-cidrs"] ?? ""));
  const excludePorts = withOption("exclude-ports", () =>
    parsePortList(v["exclude-ports"] ?? "", "exclude-ports"),
  );
  const includeText = (v["include-ports"] ?? "*").trim();
  const includePorts =
    includeText === "*" || includeText === ""
      ? undefined
      : withOption("include-ports", () => parsePortList(includeText, "include-ports"));
  if (excludePorts.includes(redirectPort))
    throw new ArgError(
      `--exclude-ports (pod annotation ${ANNOTATION_OF["exclude-ports"]}): ${redirectPort} is the redirect port itself`,
    );

  const dnsText = (v["dns-servers"] ?? "auto").trim();
  let dnsServers: InitOptions["dnsServers"];
  if (dnsText === "auto") dnsServers = "auto";
  else if (dnsText === "none" || dnsText === "") dnsServers = [];
  else {
    dnsServers = splitList(dnsText);
    for (const s of dnsServers)
      if (!isIPv4(s) && !isIPv6(s)) throw new ArgError(`--dns-servers: "${s}" is not an IP address`);
  }

  const nonTcp: NonTcpMode = oneOf(v["non-tcp"] ?? "reject", "non-tcp", ["reject", "allow"] as const);
  const ipv6 = oneOf(v.ipv6 ?? "auto", "ipv6", ["auto", "on", "off"] as const);
  const backend = oneOf(v["iptables-backend"] ?? "auto", "iptables-backend", [
    "auto",
    "nft",
    "legacy",
  ] as const);
  if (v.clean && v["dry-run"]) throw new ArgError("--clean and --dry-run cannot be combined");

  return {
    kind: "run",
    options: {
      config: { proxyUid, proxyGid, redirectPort, excludeCidrs, excludePorts, includePorts, nonTcp },
      dnsServers,
      ipv6,
      backend,
      dryRun: v["dry-run"] ?? false,
      clean: v.clean ?? false,
    },
  };
}

/** The pod annotation each option comes from, named in errors so a user knows what to fix. */
const ANNOTATION_OF: Record<string, string> = {
  "exclude-cidrs": "airlock.dev/exclude-outbound-cidrs",
  "exclude-ports": "airlock.dev/exclude-outbound-ports",
  "include-ports": "airlock.dev/include-outbound-ports",
};

function withOption<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof ArgError)) throw err;
    const detail = err.message.startsWith(`${name}: `) ? err.message.slice(name.length + 2) : err.message;
    const annotation = ANNOTATION_OF[name];
    throw new ArgError(`--${name}${annotation ? ` (pod annotation ${annotation})` : ""}: ${detail}`);
  }
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: true,
    options: {
      "proxy-uid": { type: "string" },
      "proxy-gid": { type: "string" },
      "redirect-port": { type: "string" },
      "exclude-cidrs": { type: "string" },
      "exclude-ports": { type: "string" },
      "include-ports": { type: "string" },
      "dns-servers": { type: "string" },
      "non-tcp": { type: "string" },
      ipv6: { type: "string" },
      "iptables-backend": { type: "string" },
      "dry-run": { type: "boolean" },
      clean: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}
