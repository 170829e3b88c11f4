// Request targets (RFC 9112 §3.2): origin-form `/path?q` on the per-connection listeners,
// absolute-form `http://host:port/path?q` and authority-form `host:port` (CONNECT) on the explicit
// proxy. Parsed by hand rather than with URL, which would normalize the path before the policy
// engine's own (stricter) normalization sees it.
import { splitTarget } from "../../policy/http-path.ts";

export class TargetError extends Error {}

export interface Authority {
  host: string;
  port: number;
}

export interface AbsoluteTarget extends Authority {
  scheme: "http" | "https";
  /** Path and query, origin-form. */
  pathAndQuery: string;
}

const PORT = /^[0-9]{1,5}$/;
const REG_NAME = /^[A-Za-z0-9._~!$&'()*+,;=%-]+$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

export function parseAuthority(authority: string, defaultPort?: number): Authority {
  if (authority.includes("@")) throw new TargetError("credentials in the request target are refused");
  let host: string;
  let port: string | undefined;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0) throw new TargetError("malformed IPv6 authority");
    host = authority.slice(1, close);
    if (!IPV6.test(host)) throw new TargetError("malformed IPv6 authority");
    const rest = authority.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) throw new TargetError("malformed authority");
      port = rest.slice(1);
    }
  } else {
    const colon = authority.lastIndexOf(":");
    host = colon < 0 ? authority : authority.slice(0, colon);
    port = colon < 0 ? undefined : authority.slice(colon + 1);
    if (!REG_NAME.test(host)) throw new TargetError("malformed host");
  }
  if (port === undefined || port === "") {
    if (defaultPort === undefined) throw new TargetError("a port is required");
    return { host: host.toLowerCase(), port: defaultPort };
  }
  const n = Number(port);
  if (!PORT.test(port) || n < 1 || n > 65535) throw new TargetError("malformed port");
  return { host: host.toLowerCase(), port: n };
}

export function parseAbsoluteForm(target: string): AbsoluteTarget {
  const m = /^(https?):\/\/([^/?#]*)([^#]*)$/i.exec(target);
  if (!m) throw new TargetError("the proxy expects an absolute-form request target");
  const scheme = (m[1] ?? "").toLowerCase() as "http" | "https";
  const authority = parseAuthority(m[2] ?? "", scheme === "https" ? 443 : 80);
  const rest = m[3] ?? "";
  const pathAndQuery = rest === "" ? "/" : rest.startsWith("?") ? `/${rest}` : rest;
  return { scheme, ...authority, pathAndQuery };
}

/** Splits an origin-form target; anything else (absolute-form, `*`) is refused on a reverse listener. */
export function parseOriginForm(target: string): { path: string; query: string } {
  if (!target.startsWith("/")) throw new TargetError("the request target must be a path");
  return splitTarget(target);
}
