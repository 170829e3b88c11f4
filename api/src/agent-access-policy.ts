// AgentAccessPolicy: what the agents in the selected pods may do, through which connections.
// The CRD in crds/ is generated from this file; the sidecar validates standalone policy files
// against the same schema.

import { conditionsStatus, labelSelector, secretKeyRef, secretRef } from "./common.ts";
import { bool, duration, int, list, name, obj, oneOf, opt, type Static, str } from "./schema-kit.ts";

export const PROTOCOLS = ["postgres", "http", "ssh", "mcp"] as const;
export const ACTIONS = ["allow", "deny", "requireApproval"] as const;
/** Shapes of the sidecar's own HTTP errors: Airlock's JSON, or the upstream API's error envelope. */
export const ERROR_FORMATS = ["airlock", "anthropic", "openai"] as const;
export const HTTP_METHODS = [
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "OPTIONS",
  "CONNECT",
  "*",
] as const;
export const SQL_STATEMENT_KINDS = [
  "read", // shorthand: select, show, explain without analyze of a read, copyTo, housekeeping
  "write", // shorthand: insert, update, delete, merge, copyFrom
  "select",
  "insert",
  "update",
  "delete",
  "merge",
  "truncate",
  "copyFrom",
  "copyTo",
  "create",
  "alter",
  "drop",
  "grant",
  "revoke",
  "transaction",
  "twoPhaseCommit", // PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED: outlive the session
  "set",
  // CLOSE [ALL], DEALLOCATE [ALL], DISCARD, UNLISTEN, RESET (ALL or one non-guarded setting),
  // SELECT pg_advisory_unlock_all(): what drivers and pools send to reset a session. Allowed by
  // every allow rule that admits a read kind; never writes, and keeps read-only mode.
  "housekeeping",
  "show",
  "explain",
  "call",
  "do",
  "lock",
  "maintenance",
  "other",
  "*",
] as const;
export const DETECTORS = [
  "all",
  "email",
  "creditCard",
  "usSsn",
  "iban",
  "phone",
  "ipv4",
  "ipv6",
  "awsAccessKey",
  "awsSecretKey",
  "githubToken",
  "slackToken",
  "jwt",
  "privateKey",
  "urlCredentials",
  "secretCatalogue",
  "keywordSecret",
  "secrets",
] as const;
export const MASK_STRATEGIES = ["redact", "partial", "hash"] as const;
export const TLS_MODES = ["verify-full", "verify-ca", "disable", "passthrough"] as const;
export const AGENT_TLS_MODES = ["disable", "allow", "require"] as const;
export const SIGNING_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
] as const;

/** CEL: connection `c` relays the agent's own TLS (tls.mode passthrough). */
const PASSTHROUGH = (c: string) => `has(${c}.tls) && ${c}.tls.mode == 'passthrough'`;

const connectionNames = (what: string) =>
  list(str({ description: "Name of a connection in spec.connections.", maxLength: 63 }), {
    description: `Connections this ${what} applies to. Empty or absent means every connection.`,
    maxItems: 16,
    listType: "set",
  });

const oidc = obj(
  {
    issuer: str({
      description:
        "OIDC issuer URL; tokens must carry exactly this `iss`. Discovery reads <issuer>/.well-known/openid-configuration.",
      maxLength: 512,
      pattern: "^https?://",
    }),
    audiences: list(str({ description: "An accepted audience.", maxLength: 256 }), {
      description: "Accepted `aud` values; a token must name at least one.",
      minItems: 1,
      maxItems: 8,
      listType: "set",
    }),
    jwksUri: opt(
      str({
        description: "JWKS URL. Defaults to the `jwks_uri` from discovery.",
        maxLength: 512,
        pattern: "^https?://",
      }),
    ),
    usernameClaim: opt(str({ description: "Claim that names the user.", maxLength: 64, default: "sub" })),
    groupsClaim: opt(
      str({
        description: "Claim holding the user's groups (an array of strings).",
        maxLength: 64,
        default: "groups",
      }),
    ),
    algorithms: opt(
      list(oneOf(SIGNING_ALGORITHMS, { description: "An asymmetric JWS algorithm." }), {
        description: "Accepted signing algorithms. Symmetric (HS*) and `none` are never accepted.",
        maxItems: 11,
        listType: "set",
      }),
    ),
    clockSkew: opt(duration({ description: "Tolerance for exp/nbf/iat checks.", default: "30s", max: "5m" })),
  },
  {
    description: "OpenID Connect issuer whose ID or access tokens identify the end user the agent acts for.",
  },
);

const identity = obj(
  {
    requireUserToken: opt(
      bool({
        description:
          "Refuse operations that do not carry a valid end-user token (HTTP header X-Airlock-Identity, the PostgreSQL or SSH password).",
        default: false,
      }),
    ),
    oidc: opt(oidc),
  },
  {
    description:
      "Who the agent acts for. The pod's service account is always known; an end-user token adds a person.",
    validations: [
      {
        rule: "!has(self.requireUserToken) || !self.requireUserToken || has(self.oidc)",
        message: "requireUserToken needs identity.oidc",
      },
    ],
  },
);

const tls = obj(
  {
    mode: oneOf(TLS_MODES, {
      description:
        "verify-full checks the chain and the host name; verify-ca only the chain; disable speaks plaintext. passthrough (protocol http only; like an Istio gateway's PASSTHROUGH) relays the agent's own TLS opaque to the target, for clients that pin the server's key: the pod CA never signs for its host or aliases, the tunnel is opened only for a rule allowing methods [CONNECT] and audited as one http-tunnel operation (server name, bytes each way), the SNI must be the host or an alias, and nothing inside is read, so paths, approvals, masking, credentials, userHeader, errorFormat, limits and listen are refused on such a connection.",
      default: "verify-full",
    }),
    caSecretRef: opt(
      secretKeyRef("CA bundle (PEM) to verify the upstream with, instead of the system roots."),
    ),
    serverName: opt(
      str({
        description: "Name to send as SNI and to verify, when it differs from target.host.",
        maxLength: 253,
      }),
    ),
  },
  { description: "TLS from the sidecar to the upstream. Absent means verify-full." },
);

const VAULT_SEGMENT = "[A-Za-z0-9_.-]+";

const vault = obj(
  {
    address: str({
      description:
        "Vault or OpenBao address, e.g. https://vault.vault.svc:8200. http:// is accepted for loopback only.",
      minLength: 1,
      maxLength: 512,
      pattern: "^https?://[^/?#@\\s]+$",
      validations: [
        {
          rule: "self.startsWith('https://') || self.matches('^http://(127[.]0[.]0[.]1|localhost|\\\\[::1\\\\])(:[0-9]+)?$')",
          message: "address must be https:// (http:// only for 127.0.0.1, localhost or [::1])",
        },
      ],
    }),
    caSecretRef: opt(secretKeyRef("CA bundle (PEM) to verify Vault with, instead of the system roots.")),
    auth: obj(
      {
        mount: opt(
          str({
            description: "Path the Kubernetes auth method is mounted at.",
            maxLength: 128,
            default: "kubernetes",
            pattern: `^${VAULT_SEGMENT}(/${VAULT_SEGMENT})*$`,
          }),
        ),
        role: str({
          description: "Vault role the sidecar's service account logs in as.",
          minLength: 1,
          maxLength: 128,
          pattern: `^${VAULT_SEGMENT}$`,
        }),
        audience: opt(
          str({
            description:
              "Audience of the projected service-account token the sidecar logs in with; the Vault role's audience must match. Absent: the pod's own token (the API server's audience).",
            minLength: 1,
            maxLength: 253,
          }),
        ),
      },
      { description: "Kubernetes auth: the sidecar logs in with its projected service-account token." },
    ),
    path: str({
      description:
        "Secrets path. PostgreSQL: the database secrets engine's <mount>/creds/<role>, read once per agent session; the lease is renewed while the session lasts and revoked when it ends. SSH: the SSH secrets engine's <mount>/sign/<role>, which signs each session's fresh key (credentials.ssh.certificate says principals and validity). HTTP and MCP: a KV entry (v2: <mount>/data/<path>, v1: <mount>/<path>) whose field credentials.http.key is the credential, read at first use and again every refreshSeconds.",
      minLength: 1,
      maxLength: 256,
      pattern: `^${VAULT_SEGMENT}(/${VAULT_SEGMENT})*$`,
      validations: [
        { rule: "!self.matches('(^|/)[.]{1,2}(/|$)')", message: "path segments may not be . or .." },
      ],
    }),
    approvedPath: opt(
      str({
        description:
          "PostgreSQL: the database secrets engine's <mount>/creds/<role> a statement a human approved runs under. A credential is minted for it when the approval is granted, the statement runs alone on a connection of its own as that role, and the lease is revoked when it completes; the agent's session keeps path's role. Absent: approved statements run in the agent's session.",
        minLength: 1,
        maxLength: 256,
        pattern: `^${VAULT_SEGMENT}(/${VAULT_SEGMENT})*$`,
        validations: [
          {
            rule: "!self.matches('(^|/)[.]{1,2}(/|$)')",
            message: "approvedPath segments may not be . or ..",
          },
          {
            rule: "self.matches('/creds/[^/]+$')",
            message: "approvedPath must be the database secrets engine's <mount>/creds/<role>",
          },
        ],
      }),
    ),
    refreshSeconds: opt(
      int({
        description:
          "HTTP and MCP: how long a value read from Vault is used before it is read again (a rotated key is picked up within this time); absent: 300. If a re-read fails, the last value is used for one more period, then requests are refused (503).",
        minimum: 5,
        maximum: 86400,
      }),
    ),
    fallback: opt(
      oneOf(["none", "secretRef"] as const, {
        description:
          "What the sidecar does when Vault cannot issue a credential: none refuses the session (08004); secretRef uses the static credential in secretRef.",
        default: "none",
      }),
    ),
  },
  {
    description:
      "A credential from Vault or OpenBao: for PostgreSQL a dynamic one per agent session; for HTTP and MCP a KV entry the sidecar re-reads every refreshSeconds.",
  },
);

const credentials = obj(
  {
    secretRef: opt(
      secretRef(
        "Secret in the policy's namespace that holds the upstream credential. Mounted only into the sidecar.",
      ),
    ),
    vault: opt(vault),
    http: opt(
      obj(
        {
          header: opt(
            str({
              description: "Header the credential is sent in.",
              maxLength: 128,
              default: "Authorization",
            }),
          ),
          key: opt(
            str({
              description: "Key in the Secret holding the credential.",
              maxLength: 253,
              default: "token",
            }),
          ),
          format: opt(
            str({
              description: "How the header value is built; `{value}` is replaced by the credential.",
              maxLength: 256,
              default: "Bearer {value}",
              validations: [{ rule: "self.contains('{value}')", message: "must contain {value}" }],
            }),
          ),
        },
        {
          description:
            "How the credential is presented to an HTTP upstream. Any credential the agent sent in the same header is dropped.",
        },
      ),
    ),
    postgres: opt(
      obj(
        {
          usernameKey: opt(
            str({
              description: "Key in the Secret holding the database user.",
              maxLength: 253,
              default: "username",
            }),
          ),
          passwordKey: opt(
            str({
              description:
                "Key in the Secret holding the password (SCRAM-SHA-256, MD5 or cleartext as the server asks).",
              maxLength: 253,
              default: "password",
            }),
          ),
        },
        { description: "How the sidecar authenticates to PostgreSQL." },
      ),
    ),
    ssh: opt(
      obj(
        {
          username: str({ description: "Upstream login user.", maxLength: 64 }),
          privateKeyKey: opt(
            str({ description: "Key in the Secret holding an OpenSSH private key.", maxLength: 253 }),
          ),
          certificate: opt(
            obj(
              {
                caKey: opt(
                  str({
                    description:
                      "Key in the Secret holding the user CA private key that signs per-session certificates. Not with credentials.vault, where Vault's SSH secrets engine signs them.",
                    maxLength: 253,
                  }),
                ),
                validity: opt(
                  duration({ description: "Lifetime of each certificate.", default: "5m", max: "1h" }),
                ),
                principals: list(str({ description: "A principal.", maxLength: 64 }), {
                  description: "Principals written into the certificate.",
                  minItems: 1,
                  maxItems: 8,
                  listType: "set",
                }),
              },
              {
                description:
                  "Sign a short-lived OpenSSH user certificate per session, so that no standing key exists.",
              },
            ),
          ),
        },
        {
          description: "How the sidecar authenticates to the SSH server.",
          validations: [
            {
              rule: "has(self.privateKeyKey) || has(self.certificate)",
              message: "ssh credentials need privateKeyKey or certificate",
            },
          ],
        },
      ),
    ),
  },
  {
    description: "Upstream credentials held by the sidecar; the agent never sees them.",
    validations: [
      { rule: "has(self.secretRef) || has(self.vault)", message: "credentials need secretRef or vault" },
      {
        rule: "!has(self.vault) || !has(self.vault.fallback) || self.vault.fallback != 'secretRef' || has(self.secretRef)",
        message: "vault.fallback secretRef needs credentials.secretRef",
      },
    ],
  },
);

const connection = obj(
  {
    name: name("Connection name, referenced by rules and masking."),
    protocol: oneOf(PROTOCOLS, {
      description: "Protocol the sidecar speaks and enforces on this connection.",
    }),
    target: obj(
      {
        host: str({
          description: "Upstream host name or IP address. Captured traffic to it maps to this connection.",
          minLength: 1,
          maxLength: 253,
        }),
        port: int({ description: "Upstream port.", minimum: 1, maximum: 65535 }),
        aliases: opt(
          list(str({ description: "Another host name or address.", maxLength: 253 }), {
            description:
              "Further names or addresses (Host header, TLS SNI, resolved IPs) that map to this connection.",
            maxItems: 16,
            listType: "set",
          }),
        ),
      },
      { description: "Where the upstream is." },
    ),
    tls: opt(tls),
    agentTls: opt(
      obj(
        {
          mode: oneOf(AGENT_TLS_MODES, {
            description:
              "disable answers the agent's SSLRequest with N (plaintext inside the pod); allow accepts TLS when the agent asks (sslmode=require, verify-ca and verify-full work, with the injected trust bundle as root for the verify modes); require also refuses an agent that does not ask for TLS.",
          }),
        },
        {
          description:
            "PostgreSQL: TLS between the agent and the sidecar, served with a certificate of the pod CA for target.host (and its aliases). Absent means disable.",
        },
      ),
    ),
    credentials: opt(credentials),
    listen: opt(
      obj(
        {
          port: int({
            description: "Port on 127.0.0.1 where the sidecar serves this connection directly.",
            minimum: 1024,
            maximum: 65535,
          }),
        },
        {
          description:
            "A local listener for clients configured with an explicit endpoint (e.g. ANTHROPIC_BASE_URL=http://127.0.0.1:PORT).",
        },
      ),
    ),
    database: opt(
      str({
        description: "PostgreSQL: database the sidecar connects to, whatever the agent asked for.",
        maxLength: 63,
      }),
    ),
    knownHosts: opt(
      secretKeyRef("SSH: known_hosts entries for the upstream; host keys are always verified."),
    ),
    userHeader: opt(
      str({
        description:
          "HTTP: header in which the sidecar tells the upstream who the verified end user is (e.g. X-Forwarded-User); absent when the request carries no verified user token. Whatever the agent sent in it is dropped.",
        maxLength: 128,
        pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
      }),
    ),
    errorFormat: opt(
      oneOf(ERROR_FORMATS, {
        description:
          "HTTP: shape of the sidecar's own refusals (denials, approvals, masking and upstream failures). `anthropic` and `openai` answer in that API's error envelope, so its SDKs raise their usual typed errors with Airlock's reason, rule and next step in the message; `airlock` (also when absent; no schema default, so other protocols stay free of it) is Airlock's JSON.",
      }),
    ),
    mcp: opt(
      obj(
        {
          pinnedTools: opt(
            list(
              obj(
                {
                  name: str({
                    description: "The tool's name, as tools/list gives it.",
                    minLength: 1,
                    maxLength: 256,
                  }),
                  digest: str({
                    description:
                      "sha256: and the hex SHA-256 of the tool's definition as canonical JSON (RFC 8785) of name, description, inputSchema and annotations (those present). The sidecar logs and audits the digest it sees.",
                    pattern: "^sha256:[0-9a-f]{64}$",
                    maxLength: 71,
                  }),
                },
                { description: "One pinned tool definition." },
              ),
              {
                description:
                  "Tool definitions the server must keep: a tool whose definition has another digest is removed from tools/list and calls to it are refused. Tools not listed here are pinned at first sight (per sidecar process).",
                maxItems: 256,
                mapKeys: ["name"],
              },
            ),
          ),
          approvalWaitSeconds: opt(
            int({
              description:
                "How long a request held for approval waits before the agent is answered with a JSON-RPC error (-32010, data.airlock.error approval_pending, the AccessRequest's name): the AccessRequest stays pending, and the same call retried once it is approved goes through. Absent: 50, under the TypeScript SDK's 60 s request timeout, so the agent gets an error it can act on instead of its own timeout.",
              minimum: 1,
              maximum: 3600,
            }),
          ),
        },
        { description: "MCP: what the sidecar holds the server to, and how long calls wait for approval." },
      ),
    ),
    limits: opt(
      obj(
        {
          maxRequestBodyBytes: opt(
            int({
              description: "Largest request body accepted from the agent.",
              minimum: 0,
              default: 10485760,
            }),
          ),
          maxResponseBodyBytes: opt(
            int({
              description: "Largest response body buffered for masking; larger masked responses are refused.",
              minimum: 0,
              default: 10485760,
            }),
          ),
        },
        { description: "Size limits." },
      ),
    ),
  },
  {
    description: "An upstream the agent may reach through the sidecar.",
    validations: [
      {
        rule: "!has(self.credentials) || !has(self.credentials.http) || self.protocol == 'http' || self.protocol == 'mcp'",
        message: "credentials.http is only for protocols http and mcp",
      },
      {
        rule: "!has(self.credentials) || !has(self.credentials.postgres) || self.protocol == 'postgres'",
        message: "credentials.postgres is only for protocol postgres",
      },
      {
        rule: "!has(self.credentials) || !has(self.credentials.ssh) || self.protocol == 'ssh'",
        message: "credentials.ssh is only for protocol ssh",
      },
      {
        rule: "!has(self.credentials) || !has(self.credentials.vault) || self.protocol != 'ssh' || (self.credentials.vault.path.matches('/sign/[^/]+$') && has(self.credentials.ssh) && has(self.credentials.ssh.certificate) && !has(self.credentials.ssh.certificate.caKey))",
        message:
          "for protocol ssh, credentials.vault signs the session certificates: its path is the SSH secrets engine's <mount>/sign/<role>, with credentials.ssh.certificate and no caKey",
      },
      {
        rule: "!has(self.credentials) || !has(self.credentials.ssh) || !has(self.credentials.ssh.certificate) || has(self.credentials.vault) || has(self.credentials.ssh.certificate.caKey)",
        message: "credentials.ssh.certificate needs caKey, or credentials.vault to sign with",
      },
      {
        rule: "!has(self.credentials) || !has(self.credentials.vault) || self.protocol != 'postgres' || self.credentials.vault.path.matches('/creds/[^/]+$')",
        message:
          "credentials.vault.path must be the database secrets engine's <mount>/creds/<role> for protocol postgres",
      },
      {
        rule: "!has(self.credentials) || !has(self.credentials.vault) || !has(self.credentials.vault.approvedPath) || self.protocol == 'postgres'",
        message: "credentials.vault.approvedPath is only for protocol postgres",
      },
      {
        rule: "!has(self.credentials) || !has(self.credentials.vault) || !has(self.credentials.vault.refreshSeconds) || self.protocol == 'http' || self.protocol == 'mcp'",
        message:
          "credentials.vault.refreshSeconds is only for protocols http and mcp (a PostgreSQL lease lasts the agent session)",
      },
      {
        rule: "!has(self.credentials) || !has(self.credentials.vault) || !has(self.credentials.vault.fallback) || self.credentials.vault.fallback != 'secretRef' || self.protocol != 'ssh'",
        message: "credentials.vault.fallback secretRef is not for protocol ssh",
      },
      {
        rule: "!has(self.credentials) || has(self.credentials.secretRef) || self.protocol == 'postgres' || has(self.credentials.vault)",
        message:
          "credentials.secretRef is required for protocols ssh, http and mcp without credentials.vault",
      },
      {
        rule: "!has(self.database) || self.protocol == 'postgres'",
        message: "database is only for protocol postgres",
      },
      {
        rule: "!has(self.agentTls) || self.protocol == 'postgres'",
        message: "agentTls is only for protocol postgres",
      },
      {
        rule: "!has(self.knownHosts) || self.protocol == 'ssh'",
        message: "knownHosts is only for protocol ssh",
      },
      {
        rule: "!has(self.userHeader) || self.protocol == 'http'",
        message: "userHeader is only for protocol http",
      },
      {
        rule: "!has(self.errorFormat) || self.protocol == 'http'",
        message: "errorFormat is only for protocol http",
      },
      {
        rule: "!has(self.mcp) || self.protocol == 'mcp'",
        message: "mcp is only for protocol mcp",
      },
      {
        rule: "!has(self.tls) || self.tls.mode != 'passthrough' || self.protocol == 'http'",
        message: "tls.mode passthrough is only for protocol http",
      },
      {
        rule: "!has(self.tls) || self.tls.mode != 'passthrough' || (!has(self.tls.caSecretRef) && !has(self.tls.serverName))",
        message:
          "tls.mode passthrough relays the agent's own TLS: the sidecar verifies nothing upstream, so caSecretRef and serverName cannot apply",
      },
      {
        rule: "!has(self.tls) || self.tls.mode != 'passthrough' || (!has(self.credentials) && !has(self.userHeader) && !has(self.errorFormat) && !has(self.limits) && !has(self.listen))",
        message:
          "tls.mode passthrough: the tunnel's requests are never read, so credentials, userHeader, errorFormat, limits and listen cannot be enforced on it",
      },
    ],
  },
);

const subjects = obj(
  {
    users: opt(
      list(str({ description: "A user name as the OIDC usernameClaim gives it.", maxLength: 256 }), {
        description: "End users.",
        maxItems: 64,
        listType: "set",
      }),
    ),
    groups: opt(
      list(str({ description: "A group from the OIDC groupsClaim.", maxLength: 256 }), {
        description: "End-user groups.",
        maxItems: 64,
        listType: "set",
      }),
    ),
    serviceAccounts: opt(
      list(
        str({
          description: "A service account name in the policy's namespace, or namespace/name.",
          maxLength: 317,
        }),
        {
          description: "Pod service accounts.",
          maxItems: 64,
          listType: "set",
        },
      ),
    ),
  },
  {
    description: "Who the rule applies to: any listed user, group or service account. Absent means everyone.",
  },
);

const match = obj(
  {
    http: opt(
      obj(
        {
          methods: opt(
            list(oneOf(HTTP_METHODS, { description: "An HTTP method; * is any." }), {
              description: "Methods. Absent means any.",
              maxItems: 9,
              listType: "set",
            }),
          ),
          paths: opt(
            list(
              str({
                description: "A glob on the normalized path: * within a segment, ** across segments.",
                maxLength: 1024,
                pattern: "^/",
              }),
              {
                description:
                  "Paths, matched after percent-decoding and resolving . and .. segments. Absent means any.",
                maxItems: 64,
                listType: "set",
              },
            ),
          ),
          websocket: opt(
            bool({ description: "Allow WebSocket upgrades on matching requests.", default: false }),
          ),
          binaryBodies: opt(
            bool({
              description:
                "Allow rules on connections with request masking: let request bodies that are not text through unmasked on matching requests (they cannot be masked, so they are refused otherwise).",
              default: false,
            }),
          ),
        },
        { description: "HTTP request match." },
      ),
    ),
    sql: opt(
      obj(
        {
          statements: opt(
            list(oneOf(SQL_STATEMENT_KINDS, { description: "A statement kind." }), {
              description: "Statement kinds. Absent means any.",
              maxItems: 25,
              listType: "set",
            }),
          ),
          tables: opt(
            list(
              str({ description: "A table, optionally schema-qualified; * globs allowed.", maxLength: 256 }),
              { description: "Tables touched. Absent means any.", maxItems: 64, listType: "set" },
            ),
          ),
          functions: opt(
            list(str({ description: "A function name; * globs allowed.", maxLength: 256 }), {
              description: "Functions called.",
              maxItems: 64,
              listType: "set",
            }),
          ),
          settings: opt(
            list(
              str({
                description: "A custom setting name (`app.tenant`); * globs allowed (`app.*`).",
                maxLength: 256,
                pattern: "^[A-Za-z_*][A-Za-z0-9_$*]*[.][A-Za-z0-9_$.*]+$",
              }),
              {
                description:
                  "Custom settings (`x.y` names) the statement may change (SET, RESET, set_config). Row-level security policies and functions often read them as the caller's identity, so a statement that changes one is admitted only by an allow or requireApproval rule that lists it; on a deny rule, the settings it refuses.",
                maxItems: 32,
                listType: "set",
              },
            ),
          ),
        },
        { description: "SQL statement match, decided by the PostgreSQL parser." },
      ),
    ),
    mcp: opt(
      obj(
        {
          methods: opt(
            list(
              str({
                description:
                  "A JSON-RPC method name (tools/call, tools/list, resources/read, prompts/get, initialize, ...); * globs allowed (resources/*).",
                maxLength: 128,
                pattern: "^[A-Za-z0-9_/*.-]+$",
              }),
              {
                description:
                  "JSON-RPC methods. Absent means any, or, with tools/resources/prompts, the methods those name (tools/call, resources/read, prompts/get).",
                maxItems: 32,
                listType: "set",
              },
            ),
          ),
          tools: opt(
            list(str({ description: "A tool name; * globs allowed.", maxLength: 256 }), {
              description: "Tools (tools/call params.name). A rule with tools matches tools/call only.",
              maxItems: 64,
              listType: "set",
            }),
          ),
          resources: opt(
            list(
              str({
                description: "A resource URI; * matches within a path segment, ** across segments.",
                maxLength: 1024,
              }),
              {
                description:
                  "Resource URIs (resources/read params.uri). A rule with resources matches resources/read only.",
                maxItems: 64,
                listType: "set",
              },
            ),
          ),
          prompts: opt(
            list(str({ description: "A prompt name; * globs allowed.", maxLength: 256 }), {
              description: "Prompts (prompts/get params.name). A rule with prompts matches prompts/get only.",
              maxItems: 64,
              listType: "set",
            }),
          ),
          serverRequests: opt(
            list(
              str({
                description:
                  "A method the MCP server may ask of the agent: sampling/createMessage, elicitation/create, roots/list, ping; * globs allowed.",
                maxLength: 128,
                pattern: "^[A-Za-z0-9_/*.-]+$",
              }),
              {
                description:
                  "Requests the server sends to the agent (in a response stream or the GET stream). They are refused (the server gets a JSON-RPC error, the agent never sees them) unless an allow rule lists them; a deny rule listing them refuses them. Only server requests are matched by this field, and server requests only by it (or by a deny rule without match). Not for requireApproval rules.",
                maxItems: 16,
                listType: "set",
              },
            ),
          ),
          when: opt(
            str({
              description:
                'A CEL expression over a tools/call request, which the rule then matches only when it is true: args (params.arguments, a map; {} when absent) and tool (the tool name), e.g. args.env != "prod" && args.limit <= 100, or !(args.table in ["users", "payments"]). JSON numbers are doubles (args.limit > 100 works). matches() takes a literal pattern (JavaScript regular expression syntax) without nested quantifiers or backreferences, which could backtrack on what the agent sends. Checked when the policy loads (unknown variables, type errors, a result that is not a bool are refused). Fail closed: when evaluation errors (a missing key: test with has(args.x) first, a type mismatch, arguments that are not an object), an allow rule does not match and a deny or requireApproval rule does. Requires tools. In tools/list, a deny or requireApproval rule with when does not hide a tool (it applies to some calls only; an approval one adds (may require approval) to its description); an allow rule with when shows it.',
              maxLength: 2048,
            }),
          ),
        },
        {
          description:
            "MCP (Model Context Protocol) JSON-RPC request match, for protocol mcp connections: each request of a POST body is judged on its own.",
          validations: [
            {
              rule: "!has(self.when) || has(self.tools)",
              message: "match.mcp.when applies to tools/call requests: it needs tools",
            },
          ],
        },
      ),
    ),
    ssh: opt(
      obj(
        {
          commands: opt(
            list(str({ description: "A glob on the parsed command line.", maxLength: 1024 }), {
              description: "Exec commands.",
              maxItems: 64,
              listType: "set",
            }),
          ),
          shell: opt(bool({ description: "Match interactive shell sessions.", default: false })),
          portForwarding: opt(bool({ description: "Match port-forwarding requests.", default: false })),
          sftp: opt(bool({ description: "Match the SFTP subsystem.", default: false })),
        },
        { description: "SSH request match." },
      ),
    ),
  },
  { description: "What the operation must look like. Absent means any operation on the rule's connections." },
);

const approval = obj(
  {
    approvers: obj(
      {
        groups: opt(
          list(str({ description: "A Kubernetes group.", maxLength: 256 }), {
            description: "Groups whose members may approve.",
            maxItems: 16,
            listType: "set",
          }),
        ),
        users: opt(
          list(str({ description: "A Kubernetes user name.", maxLength: 256 }), {
            description: "Users who may approve.",
            maxItems: 16,
            listType: "set",
          }),
        ),
      },
      {
        description:
          "Who may approve: Kubernetes users and groups, checked by the API server when they approve.",
        validations: [
          {
            rule: "has(self.groups) || has(self.users)",
            message: "approvers need at least one group or user",
          },
        ],
      },
    ),
    minApprovals: opt(
      int({ description: "Approvals from distinct users needed.", minimum: 1, maximum: 5, default: 1 }),
    ),
    grantTtl: opt(
      duration({
        description:
          "After approval, later matching operations by the same requester pass for this long. Absent: one operation only.",
        max: "24h",
      }),
    ),
    timeout: opt(
      duration({
        description: "How long a request waits for a decision before it expires.",
        default: "5m",
        max: "24h",
      }),
    ),
    mode: opt(
      oneOf(["wait", "async"] as const, {
        description:
          "wait holds the operation; async refuses at once naming the request, to be retried once approved.",
        default: "wait",
      }),
    ),
  },
  { description: "Just-in-time approval for requireApproval rules." },
);

const rule = obj(
  {
    name: name("Rule name, reported in decisions and audit events."),
    action: oneOf(ACTIONS, {
      description:
        "Decision when the rule matches. Evaluation order is deny, then requireApproval, then allow; nothing matching is deny.",
    }),
    connections: opt(connectionNames("rule")),
    subjects: opt(subjects),
    match: opt(match),
    approval: opt(approval),
  },
  {
    description: "A rule.",
    validations: [
      {
        rule: "!has(self.approval) || self.action == 'requireApproval'",
        message: "approval is only allowed on rules whose action is requireApproval",
        fieldPath: ".approval",
      },
      {
        rule: "self.action != 'requireApproval' || has(self.approval)",
        message: "requireApproval rules need approval.approvers",
        fieldPath: ".action",
      },
      {
        rule: "self.action != 'requireApproval' || !has(self.match) || !has(self.match.mcp) || !has(self.match.mcp.serverRequests)",
        message:
          "match.mcp.serverRequests cannot require approval (nobody is asked on the server's behalf): allow or deny them",
        fieldPath: ".match.mcp.serverRequests",
      },
    ],
  },
);

const masking = obj(
  {
    name: name("Masking rule name, reported in audit events."),
    connections: opt(connectionNames("masking rule")),
    detectors: opt(
      list(
        oneOf(DETECTORS, {
          description:
            "A detector. PII: email, creditCard (Luhn + card network), usSsn, iban (mod-97), phone " +
            "(libphonenumber), ipv4, ipv6. Secrets: awsAccessKey, awsSecretKey, githubToken, slackToken, jwt, " +
            "privateKey (PEM), urlCredentials (password in scheme://user:pass@host), secretCatalogue (the " +
            "gitleaks rule set: Anthropic, OpenAI, Stripe, Google, GitLab, npm, SendGrid, Vault, Twilio, " +
            "DigitalOcean and ~190 more services), keywordSecret (high-entropy values after password=, " +
            "token:, AccountKey=, _authToken= and similar labels). Groups: secrets means every secret " +
            "detector, all means every detector.",
        }),
        {
          description:
            "Value detectors run over every text value. airlock mask --report names the family (service or card network) that matched.",
          maxItems: 16,
          listType: "set",
        },
      ),
    ),
    fields: opt(
      list(
        str({
          description: "A JSON path such as $.user.email, $.items[*].ssn or $..password.",
          maxLength: 256,
          pattern: "^\\$",
        }),
        { description: "JSON fields masked whatever they contain.", maxItems: 64, listType: "set" },
      ),
    ),
    columns: opt(
      list(str({ description: "A column name, case-insensitive.", maxLength: 63 }), {
        description: "SQL result columns masked whatever they contain.",
        maxItems: 64,
        listType: "set",
      }),
    ),
    strategy: oneOf(MASK_STRATEGIES, {
      description:
        "redact replaces the value; partial keeps the last 4 characters; hash is a keyed HMAC stable per install.",
      default: "redact",
    }),
    direction: opt(
      oneOf(["response", "request", "both"] as const, {
        description: "Mask responses to the agent, requests from it (e.g. prompts to an LLM API), or both.",
        default: "response",
      }),
    ),
  },
  {
    description: "Masking of sensitive values.",
    validations: [
      {
        rule: "has(self.detectors) || has(self.fields) || has(self.columns)",
        message: "a masking rule needs detectors, fields or columns",
      },
    ],
  },
);

export const AgentAccessPolicySpec = obj(
  {
    podSelector: opt(
      labelSelector("Pods in the policy's namespace this policy applies to. Empty selects every pod."),
    ),
    identity: opt(identity),
    connections: list(connection, {
      description: "Upstreams reachable through the sidecar. Anything else is denied.",
      minItems: 1,
      maxItems: 32,
      mapKeys: ["name"],
    }),
    rules: list(rule, {
      description: "Rules, evaluated deny, requireApproval, allow; no match denies.",
      maxItems: 128,
      mapKeys: ["name"],
    }),
    masking: opt(list(masking, { description: "Masking rules.", maxItems: 32, mapKeys: ["name"] })),
    audit: opt(
      obj(
        {
          recordSessions: opt(
            bool({
              description: "Record sessions for replay (SSH as asciicast v2, SQL and HTTP as JSON lines).",
              default: true,
            }),
          ),
          destination: opt(
            oneOf(["stdout", "file"] as const, {
              description: "Where recordings go: the sidecar's stdout audit stream, or files.",
              default: "stdout",
            }),
          ),
          directory: opt(
            str({ description: "Directory for file recordings.", maxLength: 1024, pattern: "^/" }),
          ),
        },
        {
          description: "Audit and session recording.",
          validations: [
            {
              rule: "!has(self.destination) || self.destination != 'file' || has(self.directory)",
              message: "destination file needs directory",
            },
          ],
        },
      ),
    ),
  },
  {
    description: "What agents in the selected pods may do.",
    validations: [
      {
        rule: "self.rules.all(r, !has(r.connections) || r.connections.all(n, self.connections.exists(c, c.name == n)))",
        message: "rules[].connections must name connections in spec.connections",
        fieldPath: ".rules",
        reason: "FieldValueInvalid",
      },
      {
        rule: "!has(self.masking) || self.masking.all(m, !has(m.connections) || m.connections.all(n, self.connections.exists(c, c.name == n)))",
        message: "masking[].connections must name connections in spec.connections",
        fieldPath: ".masking",
        reason: "FieldValueInvalid",
      },
      {
        rule: "self.rules.all(r, !has(r.match) || !has(r.match.mcp) || (has(r.connections) && r.connections.all(n, self.connections.exists(c, c.name == n && c.protocol == 'mcp'))))",
        message: "rules with match.mcp must list connections, all of protocol mcp",
        fieldPath: ".rules",
        reason: "FieldValueInvalid",
      },
      {
        rule: "self.rules.all(r, !has(r.match) || !has(r.match.http) || !has(r.connections) || r.connections.all(n, !self.connections.exists(c, c.name == n && c.protocol == 'mcp')))",
        message:
          "match.http does not apply to protocol mcp connections (they are judged per JSON-RPC request): use match.mcp",
        fieldPath: ".rules",
        reason: "FieldValueInvalid",
      },
      // tls.mode passthrough: what a rule or masking rule could say about an opaque tunnel's content
      // cannot be enforced, so it is refused rather than ignored (validate.ts says which rule and why).
      {
        rule: `self.rules.all(r, !has(r.match) || !has(r.match.http) || (has(r.match.http.methods) && r.match.http.methods == ['CONNECT'] && !has(r.match.http.paths) && (!has(r.match.http.websocket) || !r.match.http.websocket) && (!has(r.match.http.binaryBodies) || !r.match.http.binaryBodies)) || !self.connections.exists(c, ${PASSTHROUGH("c")} && (!has(r.connections) || size(r.connections) == 0 || c.name in r.connections)))`,
        message:
          "a rule on a tls.mode passthrough connection can match only methods [CONNECT]: the tunnel's methods and paths are encrypted end to end",
        fieldPath: ".rules",
        reason: "FieldValueInvalid",
      },
      {
        rule: `self.rules.all(r, r.action != 'requireApproval' || (has(r.match) && !has(r.match.http)) || !self.connections.exists(c, ${PASSTHROUGH("c")} && (!has(r.connections) || size(r.connections) == 0 || c.name in r.connections)))`,
        message:
          "requireApproval cannot apply to a tls.mode passthrough connection: an opaque tunnel cannot be held for approval",
        fieldPath: ".rules",
        reason: "FieldValueInvalid",
      },
      {
        rule: `self.rules.all(r, r.action != 'allow' || !has(r.match) || !has(r.match.http) || !has(r.match.http.methods) || !('CONNECT' in r.match.http.methods) || (has(r.connections) && size(r.connections) > 0 && r.connections.all(n, self.connections.exists(c, c.name == n && ${PASSTHROUGH("c")}))))`,
        message:
          "a rule allowing CONNECT opens an opaque tunnel, which only tls.mode passthrough connections have: it must list its connections, all of them passthrough (other HTTPS connections are intercepted and judged per request)",
        fieldPath: ".rules",
        reason: "FieldValueInvalid",
      },
      {
        rule: `self.rules.all(r, r.action != 'allow' || has(r.match) || !has(r.connections) || !r.connections.exists(n, self.connections.exists(c, c.name == n && ${PASSTHROUGH("c")})))`,
        message:
          "an allow rule without match opens nothing on a tls.mode passthrough connection: its tunnel is opened only by a rule matching methods [CONNECT]",
        fieldPath: ".rules",
        reason: "FieldValueInvalid",
      },
      {
        rule: `!has(self.masking) || self.masking.all(m, !self.connections.exists(c, ${PASSTHROUGH("c")} && (has(m.connections) && size(m.connections) > 0 ? c.name in m.connections : (has(m.detectors) || has(m.fields)))))`,
        message:
          "masking cannot apply to a tls.mode passthrough connection (its bytes stay encrypted): list the masking rule's connections without it",
        fieldPath: ".masking",
        reason: "FieldValueInvalid",
      },
    ],
  },
);

export const AgentAccessPolicyStatus = conditionsStatus(
  "Observed state, written by the Airlock policy controller.",
  {
    connections: opt(
      str({ description: "Connection names, comma-separated, for kubectl get.", maxLength: 2048 }),
    ),
    rules: opt(int({ description: "Number of rules, for kubectl get.", minimum: 0 })),
  },
);

export type AgentAccessPolicySpec = Static<typeof AgentAccessPolicySpec>;
export type AgentAccessPolicyStatus = Static<typeof AgentAccessPolicyStatus>;
export type Connection = AgentAccessPolicySpec["connections"][number];
export type Rule = AgentAccessPolicySpec["rules"][number];
export type MaskingRule = NonNullable<AgentAccessPolicySpec["masking"]>[number];
export type Protocol = (typeof PROTOCOLS)[number];
export type Action = (typeof ACTIONS)[number];
export type ErrorFormat = (typeof ERROR_FORMATS)[number];
export type SqlStatementKind = (typeof SQL_STATEMENT_KINDS)[number];
export type DetectorName = (typeof DETECTORS)[number];
