// Names and values the network-namespace TLS tests share between the test, the upstream and the
// clients: the public names the agent dials, the customer record whose PII must never reach the
// agent unmasked, and the credentials (the sidecar's real ones, the agent's inert placeholders).
export const EXAMPLE_HOST = "api.example.test";
export const ANTHROPIC_HOST = "api.anthropic.com";
/** The customer API again, for a passthrough connection (clients that pin the upstream's key). */
export const PINNED_HOST = "pinned.example.test";

export const CUSTOMER = { name: "Alice Example", email: "alice@example.com", phone: "+1 415 555 0101" };

/** What the sidecar holds and injects. */
export const REAL_API_TOKEN = "tok-real-example-api-7f3a9c";
export const REAL_ANTHROPIC_KEY = "sk-ant-api03-real-key-held-by-the-sidecar-5d1e";
/** What the agent has (and sends): inert, overwritten by the sidecar. */
export const PLACEHOLDER_TOKEN = "agent-placeholder-token";
