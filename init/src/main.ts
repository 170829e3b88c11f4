#!/usr/bin/env node
// airlock-init: the egress-capture init container. Installs the iptables/ip6tables rules that send
// every outbound TCP connection of the pod to the sidecar's transparent listener (see rules.ts for
// the rule set and why), then exits. Exit codes: 0 done, 1 could not install (the pod must not
// start uncaptured), 2 bad arguments.
import { existsSync, readFileSync } from "node:fs";
import { type Command, type InitOptions, parseCommand, USAGE } from "./args.ts";
import {
  applyFamily,
  type BackendName,
  chooseBackend,
  probeBackends,
  type Runner,
  spawnRunner,
} from "./iptables.ts";
import { ArgError, nameserversFromResolvConf } from "./net.ts";
import { buildRules, type CaptureConfig, emptyRules, type Family, renderDryRun } from "./rules.ts";

export interface MainDeps {
  run?: Runner;
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
  readResolvConf?: () => string;
  /** Whether the kernel has IPv6 in this network namespace. */
  hasIpv6?: () => boolean;
}

const defaultHasIpv6 = () => existsSync("/proc/net/if_inet6");
const defaultResolvConf = () => {
  try {
    return readFileSync("/etc/resolv.conf", "utf8");
  } catch {
    return "";
  }
};

/** One JSON line per event on stderr, like the sidecar's pino logs (stdout is for --dry-run). */
function logLine(stderr: (t: string) => void, level: "info" | "warn" | "error", msg: string, extra = {}) {
  stderr(
    `${JSON.stringify({ level, time: new Date().toISOString(), name: "airlock-init", msg, ...extra })}\n`,
  );
}

export function resolveConfig(options: InitOptions, readResolvConf: () => string): CaptureConfig {
  const dnsServers =
    options.dnsServers === "auto" ? nameserversFromResolvConf(readResolvConf()) : options.dnsServers;
  return { ...options.config, dnsServers };
}

export async function main(argv: readonly string[], deps: MainDeps = {}): Promise<number> {
  const out = deps.stdout ?? ((t: string) => void process.stdout.write(t));
  const err = deps.stderr ?? ((t: string) => void process.stderr.write(t));
  let command: Command;
  try {
    command = parseCommand(argv);
  } catch (e) {
    if (!(e instanceof ArgError)) throw e;
    err(`airlock-init: ${e.message}\nRun airlock-init --help for the options.\n`);
    return 2;
  }
  if (command.kind === "help") {
    out(USAGE);
    return 0;
  }
  const { options } = command;
  const config = resolveConfig(options, deps.readResolvConf ?? defaultResolvConf);
  const hasIpv6 = (deps.hasIpv6 ?? defaultHasIpv6)();
  const families: Family[] =
    options.ipv6 === "on" ||
    (options.ipv6 === "auto" && hasIpv6) ||
    (options.dryRun && options.ipv6 !== "off")
      ? [4, 6]
      : [4];

  if (options.dryRun) {
    out(renderDryRun(config, families));
    return 0;
  }

  const run = deps.run ?? spawnRunner;
  const log = (level: "info" | "warn" | "error", msg: string, extra = {}) => logLine(err, level, msg, extra);
  try {
    if (options.ipv6 === "off")
      log("warn", "--ipv6 off: IPv6 egress is NOT captured; use only in pods without IPv6");
    else if (!families.includes(6)) log("info", "kernel has no IPv6 in this network namespace; IPv4 only");
    let backend: BackendName;
    if (options.backend === "auto") {
      const probes = await probeBackends(run, families);
      const choice = chooseBackend(probes);
      backend = choice.backend;
      log("info", `iptables backend ${backend}: ${choice.reason}`, { probes });
    } else {
      backend = options.backend;
      log("info", `iptables backend ${backend} (from --iptables-backend)`);
    }
    for (const family of families) {
      const desired = options.clean ? emptyRules(family) : buildRules(config, family);
      const result = await applyFamily(run, backend, desired);
      log("info", options.clean ? `IPv${family} rules removed` : `IPv${family} rules installed`, {
        backend,
        family,
        rules: result.rulesInstalled,
      });
    }
    if (!options.clean)
      log("info", "egress capture in force", {
        proxyUid: config.proxyUid,
        proxyGid: config.proxyGid,
        redirectPort: config.redirectPort,
        excludeCidrs: config.excludeCidrs.map((c) => c.text),
        excludePorts: config.excludePorts,
        includePorts: config.includePorts ?? "*",
        dnsServers: config.dnsServers,
        nonTcp: config.nonTcp,
      });
    return 0;
  } catch (e) {
    log("error", e instanceof Error ? e.message : String(e));
    return 1;
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
