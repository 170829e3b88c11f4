// `/approvals` on the sidecar's admin port, loopback only: list and show this sidecar's requests
// and grants and, in standalone mode (local store), approve or deny them. This is what
// `kubectl airlock --sidecar http://127.0.0.1:15990 ...` talks to. In Kubernetes mode decisions go
// through the API server (where the admission policy checks who decides), never through here.
//
//   GET  /approvals[?phase=Pending]        {mode, items: AccessRequest[], grants: GrantInfo[]}
//   GET  /approvals/grants                 {items: GrantInfo[]}
//   GET  /approvals/NAME                   AccessRequest
//   POST /approvals/NAME/approve           {"comment": "..."} → AccessRequest
//   POST /approvals/NAME/deny              {"reason": "..."}  → AccessRequest
//
// Decisions carry `Authorization: Bearer TOKEN`, a token from the approver credentials file
// (credentials.ts, owner-only); the deciding user is the name on the token's line. A `user` in
// the body must match it (an explicit mismatch is refused, never silently replaced).
// POSTs must be `content-type: application/json` without an Origin header, so a web page in a
// browser on the same machine cannot forge a decision (cross-site requests can do neither).
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Route } from "../admin/server.ts";
import { approverFor, CredentialFileError, readApproverCredentials } from "./credentials.ts";
import type { LocalApprovalStore } from "./local-store.ts";
import type { ApprovalService } from "./service.ts";
import { RejectedError } from "./store.ts";

const isLoopback = (addr: string | undefined) =>
  addr === "127.0.0.1" || addr === "::1" || addr === "::ffff:127.0.0.1";

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" }).end(`${JSON.stringify(body)}\n`);
};

const MAX_BODY = 64 * 1024;

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new RejectedError(413, "body too large");
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (!text.trim()) return {};
  const value: unknown = JSON.parse(text);
  if (!value || typeof value !== "object" || Array.isArray(value))
    throw new RejectedError(400, "body must be a JSON object");
  return value as Record<string, unknown>;
}

const str = (v: unknown, max: number) => (typeof v === "string" ? v.slice(0, max) : undefined);

export interface ApprovalRouteOptions {
  /** Standalone: the approver credentials file decisions are authenticated against. */
  credentialsFile?: string;
}

function bearer(req: IncomingMessage): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
  return m?.[1];
}

export function approvalRoutes(service: ApprovalService, opts: ApprovalRouteOptions = {}): Route {
  const store = service.store;
  const local = store.kind === "local" ? (store as LocalApprovalStore) : undefined;
  return async (req, res, url) => {
    if (url.pathname !== "/approvals" && !url.pathname.startsWith("/approvals/")) return false;
    if (!isLoopback(req.socket.remoteAddress)) {
      json(res, 403, { error: "the approvals API is only served on loopback" });
      return true;
    }
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? "GET";
    try {
      if (method === "GET" && parts.length === 1) {
        const phase = url.searchParams.get("phase");
        const items = store
          .list()
          .filter((o) => !phase || (o.status?.phase ?? "Pending") === phase)
          .sort((a, b) =>
            String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)),
          );
        json(res, 200, { mode: store.kind, namespace: store.namespace, items, grants: service.grants() });
        return true;
      }
      if (method === "GET" && parts.length === 2 && parts[1] === "grants") {
        json(res, 200, { items: service.grants() });
        return true;
      }
      const name = parts[1] ?? "";
      if (method === "GET" && parts.length === 2) {
        const obj = await store.get(name);
        if (obj) json(res, 200, obj);
        else json(res, 404, { error: `access request ${name} not found` });
        return true;
      }
      const action = parts[2];
      if (method === "POST" && parts.length === 3 && (action === "approve" || action === "deny")) {
        if (
          req.headers.origin !== undefined ||
          !/^application\/json\b/.test(req.headers["content-type"] ?? "")
        ) {
          json(res, 403, { error: "decisions need content-type application/json and no Origin header" });
          return true;
        }
        if (!local) {
          json(res, 409, {
            error: `this sidecar keeps its requests in Kubernetes: decide with \`kubectl airlock ${action} ${name} -n ${store.namespace}\``,
          });
          return true;
        }
        const token = bearer(req);
        if (!opts.credentialsFile || !token) {
          res.setHeader("www-authenticate", 'Bearer realm="airlock-approvals"');
          json(res, 401, {
            error: opts.credentialsFile
              ? `decisions need an approver credential: Authorization: Bearer TOKEN from ${opts.credentialsFile} (kubectl airlock --sidecar sends it)`
              : "this sidecar has no approver credentials file; decisions are refused",
          });
          return true;
        }
        let user: string | undefined;
        try {
          user = approverFor(readApproverCredentials(opts.credentialsFile), token);
        } catch (e) {
          if (!(e instanceof CredentialFileError)) throw e;
          json(res, 503, { error: `approver credentials unusable: ${e.message}` });
          return true;
        }
        if (!user) {
          json(res, 401, { error: "unknown approver credential" });
          return true;
        }
        const body = await readJson(req);
        const claimed = str(body.user, 256);
        if (claimed !== undefined && claimed !== user) {
          json(res, 403, { error: `the credential is ${user}'s; it cannot decide as ${claimed}` });
          return true;
        }
        const obj =
          action === "approve"
            ? local.approve(name, {
                user,
                ...(str(body.comment, 1024) ? { comment: str(body.comment, 1024) } : {}),
              })
            : local.deny(name, {
                user,
                ...(str(body.reason, 1024) ? { reason: str(body.reason, 1024) } : {}),
              });
        json(res, 200, obj);
        return true;
      }
      json(res, 404, {
        error: "not found",
        paths: [
          "GET /approvals",
          "GET /approvals/grants",
          "GET /approvals/NAME",
          "POST /approvals/NAME/approve|deny",
        ],
      });
      return true;
    } catch (err) {
      if (err instanceof RejectedError) json(res, err.code, { error: err.message });
      else if (err instanceof SyntaxError) json(res, 400, { error: `bad JSON: ${err.message}` });
      else throw err;
      return true;
    }
  };
}
