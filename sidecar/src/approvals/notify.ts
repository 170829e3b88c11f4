// Notifications: a Slack-compatible `{"text": ...}` POST to each configured webhook URL when a
// request is created and when it is decided. Sent in the background with retries and backoff; the
// data path never waits on them, and a dead webhook never holds an operation. Texts carry only what
// the AccessRequest carries (masked summaries, names), never credentials or unmasked values, and
// webhook URLs (which are secrets themselves) are never logged.
import type { Logger } from "pino";
import type { AccessRequest } from "../../../api/src/index.ts";

export type NoticeKind = "requested" | "approved" | "denied" | "expired";

export interface Notice {
  kind: NoticeKind;
  request: AccessRequest;
  /** Users whose approvals count, or the user who denied. */
  users?: readonly string[];
  /** A denial's reason. */
  reason?: string;
  /** End of the grant the approval opened. */
  grantExpiresAt?: string;
  /** How to decide from a shell, e.g. `kubectl airlock approve NAME -n NS`. */
  approveHint?: string;
}

export interface Notifier {
  notify(notice: Notice): void;
  /** Stops retrying; waits briefly for sends in flight. */
  close(): Promise<void>;
}

export interface WebhookNotifierOptions {
  urls: readonly string[];
  logger: Logger;
  /** Attempts per message (default 5). */
  attempts?: number;
  /** First retry delay, doubling (default 1 s). */
  initialBackoffMs?: number;
  /** Per-attempt timeout (default 5 s). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

const code = (s: string) => `\`${s.replace(/`/g, "'")}\``;

export function noticeText(n: Notice): string {
  const r = n.request;
  const where = `${r.metadata.namespace}/${r.metadata.name}`;
  const who = r.spec.requester.user
    ? `${r.spec.requester.user} via ${r.spec.requester.serviceAccount}`
    : r.spec.requester.serviceAccount;
  const op = `${code(r.spec.operation.summary)} (${r.spec.operation.protocol}, connection ${r.spec.connection})`;
  switch (n.kind) {
    case "requested": {
      const approvers = [
        ...(r.spec.approvers.groups ?? []).map((g) => `group ${g}`),
        ...(r.spec.approvers.users ?? []).map((u) => `user ${u}`),
      ].join(", ");
      return [
        `:lock: *Airlock approval requested*: ${code(where)}`,
        `• requester: ${who} (pod ${r.spec.requester.pod})`,
        `• operation: ${op}`,
        `• rule: ${r.spec.policy} → ${r.spec.rule}; needs ${r.spec.minApprovals} approval${r.spec.minApprovals > 1 ? "s" : ""} from ${approvers}`,
        ...(r.spec.reason ? [`• reason: ${r.spec.reason}`] : []),
        ...(r.spec.grantTtl
          ? [
              `• approving opens a ${r.spec.grantTtl} grant: every operation matching ${code(r.spec.grantCovers ?? `rule ${r.spec.rule}`)} by ${who} on connection ${r.spec.connection} passes without asking again`,
            ]
          : []),
        `• expires: ${r.spec.expiresAt}`,
        ...(n.approveHint ? [`Decide: ${code(n.approveHint)}`] : []),
      ].join("\n");
    }
    case "approved":
      return [
        `:white_check_mark: *Airlock request approved*: ${code(where)} by ${(n.users ?? []).join(", ")}`,
        `• ${op} for ${who}`,
        ...(n.grantExpiresAt ? [`• grant open until ${n.grantExpiresAt}`] : []),
      ].join("\n");
    case "denied":
      return [
        `:no_entry: *Airlock request denied*: ${code(where)} by ${(n.users ?? []).join(", ") || "(unknown)"}`,
        `• ${op} for ${who}`,
        ...(n.reason ? [`• reason: ${n.reason}`] : []),
      ].join("\n");
    case "expired":
      return [
        `:hourglass: *Airlock request expired* without a decision: ${code(where)}`,
        `• ${op} for ${who}`,
      ].join("\n");
  }
}

export function createWebhookNotifier(opts: WebhookNotifierOptions): Notifier {
  const doFetch = opts.fetch ?? fetch;
  const attempts = Math.max(1, opts.attempts ?? 5);
  const initial = opts.initialBackoffMs ?? 1000;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const closing = new AbortController();
  const inFlight = new Set<Promise<void>>();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      t.unref?.();
      closing.signal.addEventListener(
        "abort",
        () => {
          clearTimeout(t);
          resolve();
        },
        { once: true },
      );
    });

  async function send(index: number, body: string, kind: NoticeKind, request: string): Promise<void> {
    const url = opts.urls[index] as string;
    let delay = initial;
    for (let attempt = 1; attempt <= attempts && !closing.signal.aborted; attempt++) {
      let problem: string;
      try {
        const res = await doFetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
          signal: AbortSignal.any([closing.signal, AbortSignal.timeout(timeoutMs)]),
        });
        await res.body?.cancel().catch(() => undefined);
        if (res.ok) return;
        problem = `HTTP ${res.status}`;
        // Client errors other than rate limiting will not get better by retrying.
        if (res.status < 500 && res.status !== 429 && res.status !== 408) attempt = attempts;
      } catch (err) {
        problem = err instanceof Error ? err.name : "error";
      }
      if (attempt >= attempts || closing.signal.aborted) {
        opts.logger.warn(
          { webhook: index, kind, request, problem, attempts: attempt },
          "approval notification failed",
        );
        return;
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 60_000);
    }
  }

  return {
    notify(notice) {
      if (opts.urls.length === 0) return;
      const body = JSON.stringify({ text: noticeText(notice) });
      const name = notice.request.metadata.name ?? "";
      for (let i = 0; i < opts.urls.length; i++) {
        const p = send(i, body, notice.kind, name).catch(() => undefined);
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
      }
    },
    async close() {
      closing.abort();
      await Promise.race([
        Promise.allSettled([...inFlight]),
        new Promise((r) => setTimeout(r, 1000).unref?.()),
      ]);
    },
  };
}

/** Webhook URLs from `AIRLOCK_APPROVAL_WEBHOOKS` (comma- or whitespace-separated). */
export function webhookUrlsFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): string[] {
  return (env.AIRLOCK_APPROVAL_WEBHOOKS ?? "")
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => /^https?:\/\//.test(s));
}
