// Which connections the HTTP guard serves: `http`, and `mcp`, whose Streamable HTTP transport rides
// on the same listeners, proxy, capture, TLS and credentials (judged per JSON-RPC request).
import type { Protocol } from "../../../api/src/index.ts";

export const ridesHttp = (protocol: Protocol): boolean => protocol === "http" || protocol === "mcp";
