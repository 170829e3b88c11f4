// Standalone mode: AccessRequests in memory, optionally persisted to a JSON file (so a restarted
// sidecar re-attaches), decided through the sidecar's loopback admin API (admin.ts). There is no API
// server here, so this store enforces what the admission policy enforces in a cluster: decisions
// are appended, one at a time, by a named user who is not the requester, while the request is
// Pending; users are checked against approvers.users when the rule lists users only (groups cannot
// be checked without an authenticator: loopback access is the trust boundary).
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { AccessRequest, AccessRequestStatus } from "../../../api/src/index.ts";
import { type ApprovalStore, ConflictError, RejectedError, type StoreEvent } from "./store.ts";

export interface LocalStoreOptions {
  namespace: string;
  /** JSON file to persist requests to; absent: memory only. */
  file?: string;
  now?: () => number;
}

export interface LocalDecision {
  user: string;
  comment?: string;
  reason?: string;
}

export interface LocalApprovalStore extends ApprovalStore {
  readonly kind: "local";
  approve(name: string, decision: LocalDecision): AccessRequest;
  deny(name: string, decision: LocalDecision): AccessRequest;
}

const clone = <T>(v: T): T => structuredClone(v);

export function createLocalStore(opts: LocalStoreOptions): LocalApprovalStore {
  const now = opts.now ?? Date.now;
  const items = new Map<string, AccessRequest>();
  const listeners = new Set<(obj: AccessRequest, event: StoreEvent) => void>();
  let version = 0;

  if (opts.file) {
    try {
      const saved = JSON.parse(readFileSync(opts.file, "utf8")) as {
        items?: AccessRequest[];
        version?: number;
      };
      for (const item of saved.items ?? []) if (item.metadata?.name) items.set(item.metadata.name, item);
      version = saved.version ?? items.size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }

  const persist = () => {
    if (!opts.file) return;
    mkdirSync(dirname(opts.file), { recursive: true });
    const tmp = `${opts.file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ version, items: [...items.values()] }, null, 2)}\n`, {
      mode: 0o600,
    });
    renameSync(tmp, opts.file);
  };
  const changed = (obj: AccessRequest, event: StoreEvent) => {
    persist();
    for (const l of listeners) l(clone(obj), event);
  };
  const mustGet = (name: string) => {
    const obj = items.get(name);
    if (!obj) throw new RejectedError(404, `access request ${name} not found`);
    return obj;
  };

  function decide(name: string, kind: "approvals" | "denials", d: LocalDecision): AccessRequest {
    const obj = mustGet(name);
    const user = d.user?.trim();
    if (!user) throw new RejectedError(422, "a decision needs the deciding user's name");
    const phase = obj.status?.phase ?? "Pending";
    if (phase !== "Pending")
      throw new RejectedError(409, `the request is ${phase} and takes no more decisions`);
    if (kind === "approvals" && obj.spec.requester.user === user)
      throw new RejectedError(403, `user ${user} requested this access and cannot approve it`);
    const { users = [], groups = [] } = obj.spec.approvers;
    if (groups.length === 0 && !users.includes(user))
      throw new RejectedError(403, `user ${user} may not decide this request: not in spec.approvers.users`);
    const existing = [...(obj.status?.approvals ?? []), ...(obj.status?.denials ?? [])];
    if (existing.some((e) => e.user === user))
      throw new RejectedError(409, `user ${user} has already decided this request`);
    const time = new Date(now()).toISOString();
    const status: AccessRequestStatus = { ...obj.status };
    if (kind === "approvals")
      status.approvals = [
        ...(status.approvals ?? []),
        { user, time, ...(d.comment ? { comment: d.comment } : {}) },
      ];
    else
      status.denials = [...(status.denials ?? []), { user, time, ...(d.reason ? { reason: d.reason } : {}) }];
    obj.status = status;
    obj.metadata.resourceVersion = String(++version);
    changed(obj, "upsert");
    return clone(obj);
  }

  return {
    kind: "local",
    namespace: opts.namespace,
    ready: Promise.resolve(),
    connected: () => true,
    async create(input) {
      const name = input.metadata.name ?? "";
      if (!name) throw new RejectedError(422, "an AccessRequest needs a name");
      if (items.has(name)) throw new ConflictError(`access request ${name} already exists`);
      const obj = clone(input);
      obj.metadata = {
        ...obj.metadata,
        namespace: opts.namespace,
        uid: randomUUID(),
        creationTimestamp: new Date(now()),
        resourceVersion: String(++version),
      };
      delete obj.status;
      items.set(name, obj);
      changed(obj, "upsert");
      return clone(obj);
    },
    async get(name) {
      const obj = items.get(name);
      return obj ? clone(obj) : undefined;
    },
    list: () => [...items.values()].map(clone),
    async patchStatus(name, status, resourceVersion) {
      const obj = mustGet(name);
      if (resourceVersion && obj.metadata.resourceVersion !== resourceVersion)
        throw new ConflictError(
          `access request ${name} changed (resourceVersion ${obj.metadata.resourceVersion})`,
        );
      obj.status = { ...obj.status, ...status };
      obj.metadata.resourceVersion = String(++version);
      changed(obj, "upsert");
      return clone(obj);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      listeners.clear();
    },
    approve: (name, d) => decide(name, "approvals", d),
    deny: (name, d) => decide(name, "denials", d),
  };
}
