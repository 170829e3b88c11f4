// node:http, taken through require instead of an ESM import. Importing a builtin as an ES module
// reads every one of its exports, and node:http's WebSocket, CloseEvent and MessageEvent are lazy
// getters that load Node's bundled undici: ~745 KB of source kept in the V8 heap and ~6 MB of RSS
// in every sidecar, for classes the sidecar never uses. Every value the sidecar needs of
// node:http comes from here; types are imported from node:http directly (erased).
import { createRequire } from "node:module";

const http: typeof import("node:http") = createRequire(import.meta.url)("node:http");

export const { createServer, request, STATUS_CODES } = http;
export const Agent = http.Agent;
export type Agent = import("node:http").Agent;
