// At a request's expiresAt the sidecar decides itself, against the source of truth: one fresh read
// (an approval may have landed at the last moment), then phase Expired written conditionally on
// that version. If the store cannot be reached the request fails closed as unavailable.
import type { AccessRequest } from "../../../api/src/index.ts";
import { type Final, unreachableMessage } from "./outcomes.ts";
import { assess } from "./request.ts";
import { type ApprovalStore, ConflictError } from "./store.ts";

/** What expiry needs of a tracked request. */
export interface Expiring {
  readonly name: string;
  obj: AccessRequest;
  readonly final?: Final | undefined;
}

export interface ExpiryContext<T extends Expiring> {
  store: ApprovalStore;
  closed(): boolean;
  /** Takes in a fresh version (which may decide the request). */
  observe(t: T, obj: AccessRequest): void;
  finalize(t: T, final: Final): void;
  /** What a request deleted before its decision amounts to. */
  deleted(): Final;
}

const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Decides `t` at its expiry; a ConflictError (someone wrote meanwhile) reads again, up to 5 times. */
export async function expire<T extends Expiring>(t: T, ctx: ExpiryContext<T>): Promise<void> {
  const { store } = ctx;
  for (let attempt = 0; attempt < 5 && !t.final && !ctx.closed(); attempt++) {
    let fresh: AccessRequest | undefined;
    try {
      fresh = await store.get(t.name);
    } catch (err) {
      unreachable(t, ctx, `could not confirm it before it expired: ${errText(err)}`);
      return;
    }
    if (!fresh) {
      ctx.finalize(t, ctx.deleted());
      return;
    }
    ctx.observe(t, fresh);
    if (t.final) return;
    try {
      const written = await store.patchStatus(
        t.name,
        { phase: "Expired" },
        fresh.metadata.resourceVersion as string,
      );
      t.obj = written;
      ctx.finalize(t, { outcome: "expired", approvers: assess(written).approvers });
      return;
    } catch (err) {
      if (err instanceof ConflictError) continue;
      unreachable(t, ctx, `could not mark it Expired: ${errText(err)}`);
      return;
    }
  }
}

/** Longest wait between two attempts to write Expired after an outage. */
const MAX_RETRY_MS = 60_000;

/**
 * The request timed out while the API server could not be reached: fail closed, never honour
 * it later, and keep trying in the background (2 s, doubling to once a minute, for as long as
 * the outage lasts) to write Expired, so that approvers are not left a Pending request nothing
 * waits on (test/faults/catch-up.test.ts).
 */
function unreachable<T extends Expiring>(t: T, ctx: ExpiryContext<T>, detail: string) {
  const { store } = ctx;
  ctx.finalize(t, { outcome: "unavailable", approvers: [], message: unreachableMessage(t.name, detail) });
  let delay = 2000;
  const retry = async () => {
    if (ctx.closed()) return;
    try {
      const fresh = await store.get(t.name);
      if (fresh && (fresh.status?.phase ?? "Pending") === "Pending")
        await store.patchStatus(t.name, { phase: "Expired" }, fresh.metadata.resourceVersion as string);
    } catch {
      delay = Math.min(delay * 2, MAX_RETRY_MS);
      setTimeout(() => void retry(), delay).unref?.();
    }
  };
  setTimeout(() => void retry(), delay).unref?.();
}
