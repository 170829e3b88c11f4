// DER for the X.509 NameConstraints extension (RFC 5280 §4.2.1.10): permitted subtrees, and
// excluded ones (the hosts of passthrough connections: excluded wins over permitted in a verifier).
// @peculiar/x509 has no class for it, so the few bytes are encoded here.
import { isIP } from "node:net";

/** Object identifier of the NameConstraints extension. */
export const NAME_CONSTRAINTS_OID = "2.5.29.30";

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), length(content.length), content]);
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split(".").map(Number));
  // IPv6: expand "::" and write 8 groups of 16 bits.
  const [head = "", tail] = ip.split("::");
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return out;
}

/** A permitted subtree: a DNS name (the name and its subdomains; ".x" only subdomains) or one exact IP. */
export type PermittedName = { dns: string } | { ip: string };

function subtree(p: PermittedName): Buffer {
  if ("dns" in p) return tlv(0x30, tlv(0x82, Buffer.from(p.dns, "ascii")));
  const addr = ipBytes(p.ip);
  return tlv(0x30, tlv(0x87, Buffer.concat([addr, Buffer.alloc(addr.length, 0xff)])));
}

/**
 * The extension's value: NameConstraints ::= SEQUENCE { permittedSubtrees [0] GeneralSubtrees,
 * excludedSubtrees [1] GeneralSubtrees (when any) }. dNSName is [2] IA5String, iPAddress is [7]
 * OCTET STRING of address then mask (all ones: one host).
 */
export function encodeNameConstraints(
  permitted: readonly PermittedName[],
  excluded: readonly PermittedName[] = [],
): ArrayBuffer {
  if (permitted.length === 0) throw new Error("name constraints: at least one permitted name is required");
  const parts = [tlv(0xa0, Buffer.concat(permitted.map(subtree)))];
  if (excluded.length) parts.push(tlv(0xa1, Buffer.concat(excluded.map(subtree))));
  const der = tlv(0x30, Buffer.concat(parts));
  return der.buffer.slice(der.byteOffset, der.byteOffset + der.byteLength) as ArrayBuffer;
}

/** Whether `name` (a DNS name or an IP) lies inside the subtrees, as a verifier reads them. */
export function permits(permitted: readonly PermittedName[], name: string): boolean {
  const host = name.toLowerCase().replace(/\.$/, "");
  if (isIP(host)) return permitted.some((p) => "ip" in p && ipBytes(p.ip).equals(ipBytes(host)));
  return permitted.some((p) => {
    if (!("dns" in p)) return false;
    const base = p.dns.toLowerCase();
    if (base.startsWith(".")) return host.endsWith(base);
    return host === base || host.endsWith(`.${base}`);
  });
}
