import { describe, expect, it } from "vitest";
import * as names from "../../injector/src/names.ts";
import { DEFAULT_PROXY_GID, DEFAULT_PROXY_UID, DEFAULT_REDIRECT_PORT, parseCommand, USAGE } from "./args.ts";

describe("parseCommand", () => {
  it("defaults are the contract in injector/src/names.ts", () => {
    expect(DEFAULT_PROXY_UID).toBe(names.PROXY_UID);
    expect(DEFAULT_PROXY_GID).toBe(names.PROXY_GID);
    expect(DEFAULT_REDIRECT_PORT).toBe(names.PORTS.capture);
    const cmd = parseCommand([]);
    expect(cmd).toMatchObject({
      kind: "run",
      options: {
        config: { proxyUid: 1717, proxyGid: 1717, redirectPort: 15900, excludeCidrs: [], excludePorts: [] },
        dnsServers: "auto",
        ipv6: "auto",
        backend: "auto",
        dryRun: false,
        clean: false,
      },
    });
    if (cmd.kind === "run") expect(cmd.options.config.includePorts).toBeUndefined();
  });

  it("takes what the injector passes", () => {
    const cmd = parseCommand([
      "--proxy-uid",
      "1717",
      "--proxy-gid",
      "1717",
      "--redirect-port",
      "15900",
      "--exclude-cidrs",
      "10.0.0.0/8,fd00::/8",
      "--exclude-ports",
      "22,5432",
      "--include-ports",
      "443",
      "--dry-run",
    ]);
    expect(cmd.kind === "run" && cmd.options).toMatchObject({
      dryRun: true,
      config: { excludePorts: [22, 5432], includePorts: [443] },
    });
    expect(cmd.kind === "run" && cmd.options.config.excludeCidrs.map((c) => c.text)).toEqual([
      "10.0.0.0/8",
      "fd00::/8",
    ]);
  });

  it("accepts --opt=value and -h", () => {
    expect(parseCommand(["--exclude-ports=22"])).toMatchObject({
      options: { config: { excludePorts: [22] } },
    });
    expect(parseCommand(["-h"])).toEqual({ kind: "help" });
    expect(parseCommand(["--help", "--bogus-is-not-reached"].slice(0, 1))).toEqual({ kind: "help" });
  });

  it.each([
    [["--proxy-uid", "0"], /0 would exempt root/],
    [["--proxy-gid", "-1"], /--proxy-gid/],
    [["--proxy-uid", "17x"], /--proxy-uid/],
    [["--redirect-port", "70000"], /--redirect-port/],
    [["--exclude-cidrs", "10.0.0.0/8,nope"], /pod annotation airlock.dev\/exclude-outbound-cidrs.*"nope"/],
    [["--exclude-ports", "ssh"], /pod annotation airlock.dev\/exclude-outbound-ports.*"ssh"/],
    [["--include-ports", "0"], /pod annotation airlock.dev\/include-outbound-ports/],
    [["--dns-servers", "dns.local"], /--dns-servers/],
    [["--ipv6", "maybe"], /--ipv6/],
    [["--iptables-backend", "ebtables"], /--iptables-backend/],
    [["--dry-run", "--clean"], /cannot be combined/],
    [["apply"], /unexpected argument "apply"/],
    [["--exclude-cidrs"], /argument missing/],
    [["--nope"], /Unknown option '--nope'/],
  ])("refuses %j", (argv, message) => {
    expect(() => parseCommand(argv)).toThrow(message);
  });

  it("documents every option in --help", () => {
    for (const o of [
      "--proxy-uid",
      "--exclude-cidrs",
      "--include-ports",
      "--dns-servers",
      "--non-tcp",
      "--ipv6",
    ])
      expect(USAGE).toContain(o);
  });
});
