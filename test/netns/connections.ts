// The policy connections the network-namespace TLS suites share: the upstream's public HTTPS
// services (tls-upstream.ts), verified against the test's own CA (Secret `upstream-ca`), with the
// sidecar's credentials; and a passthrough connection for pinned clients.
import type { Connection } from "../../api/src/index.ts";
import { ANTHROPIC_HOST, EXAMPLE_HOST, PINNED_HOST } from "./tls-fixtures.ts";

/** Upstream TLS verified against the test's CA (no system root signs the upstream's certificate). */
export const UPSTREAM_TLS = {
  mode: "verify-full",
  caSecretRef: { name: "upstream-ca", key: "ca.crt" },
} as const satisfies Connection["tls"];

/** api.anthropic.com with the sidecar's key (Secret `anthropic-api-key`), refusals in its envelope. */
export const anthropicConnection = (name = "anthropic"): Connection => ({
  name,
  protocol: "http",
  target: { host: ANTHROPIC_HOST, port: 443 },
  tls: UPSTREAM_TLS,
  credentials: {
    secretRef: { name: "anthropic-api-key" },
    http: { header: "x-api-key", key: "api-key", format: "{value}" },
  },
  errorFormat: "anthropic",
});

/** The customer API with the sidecar's bearer token from Secret `secret` (key `token`). */
export const customerApiConnection = (name: string, secret: string): Connection => ({
  name,
  protocol: "http",
  target: { host: EXAMPLE_HOST, port: 443 },
  tls: UPSTREAM_TLS,
  credentials: {
    secretRef: { name: secret },
    http: { header: "Authorization", key: "token", format: "Bearer {value}" },
  },
});

/** The same service under PINNED_HOST, relayed opaque: the agent's own TLS end to end. */
export const pinnedConnection = (name = "pinned-api"): Connection => ({
  name,
  protocol: "http",
  target: { host: PINNED_HOST, port: 443 },
  tls: { mode: "passthrough" },
});
