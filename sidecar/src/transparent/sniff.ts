// Names a captured connection by its first bytes, for destinations whose address alone does not say
// which policy connection they are (several HTTP hosts behind one address, an address the sidecar's
// own DNS answer did not contain): the TLS ClientHello's server_name, or the HTTP/1 Host header.
// Pure functions over a growing buffer: each answers "need more bytes", "this is X", or "not X".
//
// A name found here only selects which configured connection the agent meant; the handler then dials
// that connection's own target, never the address the agent dialled, so a forged SNI or Host header
// cannot reach anywhere the policy does not name.

export type SniffResult =
  | { kind: "need-more" }
  /** `serverNameInvalid`: a server_name extension is present but names no single valid host. */
  | { kind: "tls"; serverName?: string; serverNameInvalid?: true }
  | { kind: "http"; host?: string }
  | { kind: "unknown" };

const TLS_HANDSHAKE = 0x16;
const CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const HOST_NAME = 0;

/** Lower-cased, trailing dot and port removed, brackets stripped from IPv6 literals. */
export function normalizeHost(raw: string): string | undefined {
  let host = raw.trim().toLowerCase();
  if (!host) return undefined;
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    if (end < 0) return undefined;
    host = host.slice(1, end);
  } else {
    const colon = host.indexOf(":");
    if (colon >= 0 && host.indexOf(":", colon + 1) < 0) host = host.slice(0, colon);
  }
  if (host.endsWith(".")) host = host.slice(0, -1);
  // Host names and address literals only: no spaces, slashes, control characters, userinfo.
  if (!host || !/^[a-z0-9._:-]+$/.test(host)) return undefined;
  return host;
}

/**
 * The handshake bytes of a TLS ClientHello, reassembled from as many records as it spans.
 * `undefined` while incomplete; `null` when the stream is not a TLS handshake.
 */
function handshakeMessage(buf: Buffer): Buffer | undefined | null {
  const fragments: Buffer[] = [];
  let have = 0;
  let offset = 0;
  let need: number | undefined;
  while (offset + 5 <= buf.length) {
    if (buf[offset] !== TLS_HANDSHAKE || buf[offset + 1] !== 3) return null;
    const length = buf.readUInt16BE(offset + 3);
    if (length === 0 || length > 16384 + 2048) return null;
    if (offset + 5 + length > buf.length) return undefined;
    fragments.push(buf.subarray(offset + 5, offset + 5 + length));
    have += length;
    offset += 5 + length;
    if (need === undefined && have >= 4) {
      const head = Buffer.concat(fragments);
      if (head[0] !== CLIENT_HELLO) return null;
      need = 4 + head.readUIntBE(1, 3);
    }
    if (need !== undefined && have >= need) return Buffer.concat(fragments).subarray(0, need);
  }
  if (buf.length >= 1 && buf[0] !== TLS_HANDSHAKE) return null;
  if (buf.length >= 2 && buf[1] !== 3) return null;
  return undefined;
}

/** A host name as SNI carries it (RFC 6066: a DNS name, no port, no address literal); case is free. */
const SNI_HOST = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?$/;

/**
 * The server_name of a complete ClientHello handshake message (type + length + body). `invalid`:
 * the extension is there but does not name exactly one valid host name — repeated, several
 * entries, an entry of another type, truncated, or characters no host name has (a NUL, a space,
 * `:port`) — which a guard must refuse rather than treat as "no name".
 */
export function serverNameOf(hello: Buffer): { name?: string; invalid?: true } {
  let p = 4 + 2 + 32; // type, length, legacy_version, random
  const u8 = (at: number) => hello[at] ?? 0;
  const u16 = (at: number) => (at + 2 <= hello.length ? hello.readUInt16BE(at) : 0);
  if (p + 1 > hello.length) return {};
  p += 1 + u8(p); // session id
  p += 2 + u16(p); // cipher suites
  p += 1 + u8(p); // compression methods
  if (p + 2 > hello.length) return {};
  const extEnd = Math.min(hello.length, p + 2 + u16(p));
  p += 2;
  let found: { name?: string; invalid?: true } | undefined;
  while (p + 4 <= extEnd) {
    const type = u16(p);
    const len = u16(p + 2);
    const data = hello.subarray(p + 4, Math.min(extEnd, p + 4 + len));
    p += 4 + len;
    if (type !== EXT_SERVER_NAME) continue;
    if (found) return { invalid: true }; // a second server_name extension
    found = { invalid: true };
    if (data.length < 2 || data.length !== len) continue;
    const listEnd = 2 + data.readUInt16BE(0);
    if (listEnd !== data.length || data.length < 5) continue;
    const nameType = data[2];
    const nameLen = data.readUInt16BE(3);
    if (nameType !== HOST_NAME || 5 + nameLen !== listEnd) continue; // another type, or several entries
    const raw = data.subarray(5, 5 + nameLen).toString("latin1");
    const name = SNI_HOST.test(raw) ? normalizeHost(raw) : undefined;
    if (name !== undefined) found = { name };
  }
  return found ?? {};
}

const METHOD = /^[A-Z][A-Z-]{0,19} /;

function sniffHttp(buf: Buffer): SniffResult {
  const text = buf.toString("latin1");
  const firstLineEnd = text.indexOf("\r\n");
  if (firstLineEnd < 0) {
    // Still inside the request line: keep reading only while it can still be one.
    const sofar = text.slice(0, 21);
    if (/^[A-Z][A-Z-]{0,19}$/.test(sofar) || METHOD.test(sofar)) return { kind: "need-more" };
    return { kind: "unknown" };
  }
  const requestLine = /^([A-Z][A-Z-]{0,19}) (\S+) HTTP\/1\.[01]$/.exec(text.slice(0, firstLineEnd));
  if (!requestLine) return { kind: "unknown" };
  const target = requestLine[2] ?? "";
  const absolute = /^[a-z][a-z0-9+.-]*:\/\/([^/?#@]+@)?([^/?#]+)/i.exec(target);
  if (absolute?.[2]) return { kind: "http", host: normalizeHost(absolute[2]) };
  const headersEnd = text.indexOf("\r\n\r\n");
  const block = text.slice(firstLineEnd + 2, headersEnd < 0 ? undefined : headersEnd);
  for (const line of block.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0 && line.slice(0, colon).toLowerCase() === "host") {
      // A Host header line is complete only once its CRLF arrived (or the head ended).
      const complete = headersEnd >= 0 || text.includes(`${line}\r\n`);
      if (complete) return { kind: "http", host: normalizeHost(line.slice(colon + 1)) };
    }
  }
  return headersEnd < 0 ? { kind: "need-more" } : { kind: "http" };
}

/** Classifies the first bytes of a client-first protocol. */
export function sniff(buf: Buffer): SniffResult {
  if (buf.length === 0) return { kind: "need-more" };
  if (buf[0] === TLS_HANDSHAKE) {
    const hello = handshakeMessage(buf);
    if (hello === undefined) return { kind: "need-more" };
    if (hello === null) return { kind: "unknown" };
    const { name, invalid } = serverNameOf(hello);
    return name
      ? { kind: "tls", serverName: name }
      : invalid
        ? { kind: "tls", serverNameInvalid: true }
        : { kind: "tls" };
  }
  return sniffHttp(buf);
}
