import { describe, expect, it } from "vitest";
import {
  formatIPv6,
  nameserversFromResolvConf,
  parseCidr,
  parseCidrList,
  parsePort,
  parsePortList,
} from "./net.ts";

describe("parseCidr", () => {
  it.each([
    ["10.0.0.0/8", "10.0.0.0/8", 4],
    ["10.1.2.3/8", "10.0.0.0/8", 4],
    ["192.168.1.5", "192.168.1.5/32", 4],
    ["172.31.255.255/12", "172.16.0.0/12", 4],
    ["10.1.2.3/31", "10.1.2.2/31", 4],
    ["fd00::1/8", "fd00::/8", 6],
    ["FD00:0:0:0::1/64", "fd00::/64", 6],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1/128", 6],
    ["2001:db8:1:0:0:0:0:0/48", "2001:db8:1::/48", 6],
    ["::1", "::1/128", 6],
    ["2001:db8::ffff:1/127", "2001:db8::ffff:0/127", 6],
    ["::ffff:10.0.0.1/128", "::ffff:a00:1/128", 6],
  ])("%s → %s", (input, text, family) => {
    expect(parseCidr(input)).toMatchObject({ text, family });
  });

  it.each([
    ["10.0.0.300/8", /not an IPv4 or IPv6/],
    ["10.0.0.0/33", /0 to 32/],
    ["fd00::/129", /0 to 128/],
    ["10.0.0.0/-1", /prefix length/],
    ["10.0.0.0/", /prefix length/],
    ["example.com", /not an IPv4 or IPv6/],
    ["fe80::1%eth0/64", /not an IPv4 or IPv6/],
    ["0.0.0.0/0", /every IPv4 destination/],
    ["::/0", /every IPv6 destination/],
  ])("refuses %s", (input, message) => {
    expect(() => parseCidr(input)).toThrow(message);
  });

  it("lists: trims, dedupes after normalization, keeps order", () => {
    expect(parseCidrList(" 10.1.0.0/16, 10.1.2.3/16 ,fd00::/8,,").map((c) => c.text)).toEqual([
      "10.1.0.0/16",
      "fd00::/8",
    ]);
    expect(parseCidrList("")).toEqual([]);
  });
});

describe("formatIPv6", () => {
  it("compresses the longest zero run, never a single group", () => {
    expect(formatIPv6([0x2001, 0xdb8, 0, 1, 0, 0, 0, 1])).toBe("2001:db8:0:1::1");
    expect(formatIPv6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1])).toBe("2001:db8::1:0:0:1");
    expect(formatIPv6([0, 0, 0, 0, 0, 0, 0, 0])).toBe("::");
    expect(formatIPv6([1, 0, 2, 0, 3, 0, 4, 0])).toBe("1:0:2:0:3:0:4:0");
  });
});

describe("ports", () => {
  it("parses and refuses", () => {
    expect(parsePort("22", "x")).toBe(22);
    expect(() => parsePort("0", "x")).toThrow(/1-65535/);
    expect(() => parsePort("65536", "x")).toThrow(/1-65535/);
    expect(() => parsePort("22-25", "x")).toThrow(/not a port/);
    expect(parsePortList("22, 5432 22", "x")).toEqual([22, 5432]);
  });
});

describe("nameserversFromResolvConf", () => {
  it("reads nameserver lines and skips zoned link-local addresses and junk", () => {
    const text =
      "# c\nsearch a.svc\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\n nameserver fd00::a\nnameserver bogus\noptions ndots:5\n";
    expect(nameserversFromResolvConf(text)).toEqual(["10.96.0.10", "fd00::a"]);
  });
});
