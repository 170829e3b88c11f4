// Where AccessRequests live: the Kubernetes API (kubernetes-store.ts) or, standalone, a local
// in-memory store optionally persisted to a file (local-store.ts). The approval service only uses
// this interface, so both modes share one flow.
import type { AccessRequest, AccessRequestStatus } from "../../../api/src/index.ts";

export type StoreEvent = "upsert" | "delete";

export interface ApprovalStore {
  /** "kubernetes" or "local": decides how messages tell people to approve. */
  readonly kind: "kubernetes" | "local";
  /** Namespace requests are created in. */
  readonly namespace: string;
  /** Resolves once the requests that already exist for this pod are known (re-attach). */
  readonly ready: Promise<void>;
  /** Whether the store's view is current (the watch is up). */
  connected(): boolean;
  /** Creates the request and returns it as stored (with uid and resourceVersion). */
  create(obj: AccessRequest): Promise<AccessRequest>;
  /** A fresh read from the source of truth; undefined when it does not exist. */
  get(name: string): Promise<AccessRequest | undefined>;
  /** The cached requests of this pod. */
  list(): AccessRequest[];
  /**
   * Merges `status` into the request's status (lists are replaced whole). With `resourceVersion`
   * the write only succeeds on that version (a ConflictError otherwise).
   */
  patchStatus(
    name: string,
    status: Partial<AccessRequestStatus>,
    resourceVersion?: string,
  ): Promise<AccessRequest>;
  /** Called for every change to a request of this pod (including the initial list). */
  subscribe(listener: (obj: AccessRequest, event: StoreEvent) => void): () => void;
  close(): Promise<void>;
}

/** A conditional write lost a race: read again and decide again. */
export class ConflictError extends Error {
  override readonly name = "ConflictError";
}

/** The store refused the write for good (forbidden, invalid): retrying does not help. */
export class RejectedError extends Error {
  override readonly name = "RejectedError";
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}
