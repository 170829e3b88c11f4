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
  | { kind: "tls"; serverName?: string }
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

/** The server_name of a complete ClientHello handshake message (type + length + body). */
export function serverNameFromClientHello(hello: Buffer): string | undefined {
  let p = 4 + 2 + 32; // type, length, legacy_version, random
  const u8 = (at: number) => hello[at] ?? 0;
  const u16 = (at: number) => (at + 2 <= hello.length ? hello.readUInt16BE(at) : 0);
  if (p + 1 > hello.length) return undefined;
  p += 1 + u8(p); // session id
  p += 2 + u16(p); // cipher suites
  p += 1 + u8(p); // compression methods
  if (p + 2 > hello.length) return undefined;
  const extEnd = Math.min(hello.length, p + 2 + u16(p));
  p += 2;
  while (p + 4 <= extEnd) {
    const type = u16(p);
    const len = u16(p + 2);
    const data = hello.subarray(p + 4, Math.min(extEnd, p + 4 + len));
    p += 4 + len;
    if (type !== EXT_SERVER_NAME || data.length < 2) continue;
    const listEnd = Math.min(data.length, 2 + data.readUInt16BE(0));
    let q = 2;
    while (q + 3 <= listEnd) {
      const nameType = data[q];
      const nameLen = data.readUInt16BE(q + 1);
      const name = data.subarray(q + 3, q + 3 + nameLen);
      q += 3 + nameLen;
      if (nameType === HOST_NAME && name.length === nameLen) return normalizeHost(name.toString("latin1"));
    }
  }
  return undefined;
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
    const serverName = serverNameFromClientHello(hello);
    return serverName ? { kind: "tls", serverName } : { kind: "tls" };
  }
  return sniffHttp(buf);
}
