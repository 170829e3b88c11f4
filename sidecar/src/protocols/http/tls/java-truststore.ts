// The trust bundle as a Java truststore: PKCS#12 (what keytool writes by default since Java 9)
// holding only trusted-certificate entries, unencrypted and without a MAC (certificates are
// public; Java checks a MAC only when given a store password, and the injector gives none). Each
// entry carries the attribute Java reads as "trusted for any purpose" (Oracle's trusted key usage
// OID set to anyExtendedKeyUsage), which is what makes a PKCS#12 certificate a trust anchor there.
// Hand-built DER: a handful of fixed structures, no dependency.
import { X509Certificate } from "node:crypto";

const OID = {
  data: "1.2.840.113549.1.7.1",
  certBag: "1.2.840.113549.1.12.10.1.3",
  x509Certificate: "1.2.840.113549.1.9.22.1",
  friendlyName: "1.2.840.113549.1.9.20",
  oracleTrustedKeyUsage: "2.16.840.1.113894.746875.1.1",
  anyExtendedKeyUsage: "2.5.29.37.0",
} as const;

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const len =
    n < 0x80
      ? Buffer.from([n])
      : (() => {
          const bytes: number[] = [];
          for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
          return Buffer.from([0x80 | bytes.length, ...bytes]);
        })();
  return Buffer.concat([Buffer.from([tag]), len, content]);
}

const seq = (...items: Buffer[]) => tlv(0x30, Buffer.concat(items));
/** DER SET OF: members sorted by their encoding. */
const set = (...items: Buffer[]) => tlv(0x31, Buffer.concat([...items].sort(Buffer.compare)));
const explicit0 = (inner: Buffer) => tlv(0xa0, inner);
const octets = (b: Buffer) => tlv(0x04, b);
const integer = (n: number) => tlv(0x02, Buffer.from([n]));

function oid(dotted: string): Buffer {
  const [a = 0, b = 0, ...rest] = dotted.split(".").map(Number);
  const bytes = [40 * a + b];
  for (const v of rest) {
    const chunk = [v & 0x7f];
    for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift(0x80 | (x & 0x7f));
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

function bmpString(s: string): Buffer {
  const le = Buffer.from(s, "utf16le");
  return tlv(0x1e, Buffer.from(le.swap16()));
}

const attribute = (type: string, value: Buffer) => seq(oid(type), set(value));

function certBag(der: Buffer, alias: string): Buffer {
  const bag = seq(oid(OID.x509Certificate), explicit0(octets(der)));
  return seq(
    oid(OID.certBag),
    explicit0(bag),
    set(
      attribute(OID.friendlyName, bmpString(alias)),
      attribute(OID.oracleTrustedKeyUsage, oid(OID.anyExtendedKeyUsage)),
    ),
  );
}

/** PEM certificates → a PKCS#12 truststore (DER), entries aliased by position and subject CN. */
export function javaTrustStore(pems: readonly string[]): Buffer {
  const bags = pems.map((pem, i) => {
    const cert = new X509Certificate(pem);
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? "ca";
    return certBag(cert.raw, `${String(i).padStart(3, "0")} ${cn}`.toLowerCase());
  });
  const safeContents = seq(...bags);
  const authenticatedSafe = seq(seq(oid(OID.data), explicit0(octets(safeContents))));
  return seq(integer(3), seq(oid(OID.data), explicit0(octets(authenticatedSafe))));
}
