// Address and port parsing for airlock-init. Strict on purpose: a typo in an exclusion annotation
// must stop the pod with a clear message rather than silently capture (or exclude) the wrong
// range. CIDRs are normalized (host bits cleared, IPv6 compressed as iptables-save prints it) so
// the rule set is the same whatever spelling the annotation used.
import { isIPv4, isIPv6 } from "node:net";

export interface Cidr {
  family: 4 | 6;
  /** Normalized `address/prefix`, e.g. `10.0.0.0/8`, `fd00::/8`. */
  text: string;
  prefix: number;
}

export class ArgError extends Error {
  override name = "ArgError";
}

function ipv4Bytes(address: string): number[] {
  return address.split(".").map((p) => Number(p));
}

function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase();
  // A trailing dotted quad (::ffff:10.0.0.1) becomes two groups.
  const lastColon = text.lastIndexOf(":");
  const tail = text.slice(lastColon + 1);
  if (tail.includes(".")) {
    const b = ipv4Bytes(tail);
    const hex = (hi: number, lo: number) => ((hi << 8) | lo).toString(16);
    text = `${text.slice(0, lastColon + 1)}${hex(b[0] ?? 0, b[1] ?? 0)}:${hex(b[2] ?? 0, b[3] ?? 0)}`;
  }
  const [head = "", rest] = text.split("::", 2);
  const headGroups = head ? head.split(":") : [];
  const restGroups = rest === undefined ? [] : rest ? rest.split(":") : [];
  const missing = 8 - headGroups.length - restGroups.length;
  const all = rest === undefined ? headGroups : [...headGroups, ...Array(missing).fill("0"), ...restGroups];
  return all.map((g) => Number.parseInt(g, 16));
}

/** RFC 5952 text (what glibc's inet_ntop, and so iptables-save, prints). */
export function formatIPv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(":");
  const left = hex.slice(0, bestStart).join(":");
  const right = hex.slice(bestStart + bestLen).join(":");
  return `${left}::${right}`;
}

function maskBits(values: number[], bitsPerValue: number, prefix: number): number[] {
  return values.map((v, i) => {
    const keep = Math.max(0, Math.min(bitsPerValue, prefix - i * bitsPerValue));
    if (keep === bitsPerValue) return v;
    const mask = keep === 0 ? 0 : ((1 << bitsPerValue) - 1) ^ ((1 << (bitsPerValue - keep)) - 1);
    return v & mask;
  });
}

/** Parses `a.b.c.d[/n]` or `x:y::z[/n]`; a bare address is a host route (/32, /128). */
export function parseCidr(input: string): Cidr {
  const text = input.trim();
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  const family = isIPv4(address) ? 4 : isIPv6(address) && !address.includes("%") ? 6 : undefined;
  if (!family) throw new ArgError(`"${input}" is not an IPv4 or IPv6 address or CIDR`);
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max)
      throw new ArgError(`"${input}": prefix length must be a number from 0 to ${max}`);
    prefix = Number(prefixText);
  }
  if (prefix === 0)
    throw new ArgError(
      `"${input}" would exclude every ${family === 4 ? "IPv4" : "IPv6"} destination from capture; ` +
        `opt the pod out of injection (label airlock.dev/inject: "false") instead`,
    );
  if (family === 4) {
    const bytes = maskBits(ipv4Bytes(address), 8, prefix);
    return { family, prefix, text: `${bytes.join(".")}/${prefix}` };
  }
  const groups = maskBits(ipv6Groups(address), 16, prefix);
  return { family, prefix, text: `${formatIPv6(groups)}/${prefix}` };
}

/** A single port, 1–65535. */
export function parsePort(input: string, what: string): number {
  const text = input.trim();
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535)
    throw new ArgError(`${what}: "${input}" is not a port number (1-65535)`);
  return Number(text);
}

/** Comma- (or space-) separated list; empty items are ignored, duplicates removed, order kept. */
export function splitList(input: string): string[] {
  const out: string[] = [];
  for (const item of input.split(/[\s,]+/)) if (item && !out.includes(item)) out.push(item);
  return out;
}

export function parseCidrList(input: string): Cidr[] {
  const out: Cidr[] = [];
  for (const item of splitList(input)) {
    const c = parseCidr(item);
    if (!out.some((o) => o.text === c.text)) out.push(c);
  }
  return out;
}

export function parsePortList(input: string, what: string): number[] {
  const out: number[] = [];
  for (const item of splitList(input)) {
    const p = parsePort(item, what);
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

/** `nameserver` lines of a resolv.conf; link-local IPv6 with a zone (fe80::1%eth0) is skipped. */
export function nameserversFromResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const address = m?.[1];
    if (!address || address.includes("%") || (!isIPv4(address) && !isIPv6(address))) continue;
    if (!out.includes(address)) out.push(address);
  }
  return out;
}
