// Channel-open refusals with a reason the agent can read. ssh2's `reject()` for an incoming
// channel always sends SSH_MSG_CHANNEL_OPEN_FAILURE with an empty description (OpenSSH then
// prints "open failed: administratively prohibited: "). The message has a description field, so
// the reason goes there: `rejectWithReason` sets it for the one synchronous `channelOpenFail` that
// `reject()` makes. This reaches into ssh2 internals (`_protocol.channelOpenFail`), as
// cert-auth.ts does; pinned to ssh2 1.17.x, and without them the reason is simply empty again.
import type { Connection } from "ssh2";

/** RFC 4254 §5.1 reason codes. */
export const OPEN_FAILURE = { administrativelyProhibited: 1, connectFailed: 2 } as const;

type ChannelOpenFail = (remote: number, reason: number, desc?: string) => void;
interface ProtocolInternals {
  channelOpenFail?: ChannelOpenFail;
}

export type RejectWithReason = (reject: () => void, reason: number, description: string) => void;

export function openFailureReasons(agent: Connection): RejectWithReason {
  const proto = (agent as unknown as { _protocol?: ProtocolInternals })._protocol;
  const original = proto?.channelOpenFail;
  if (!proto || typeof original !== "function") return (reject) => reject();
  let pending: { reason: number; description: string } | undefined;
  proto.channelOpenFail = (remote, reason, desc) => {
    const p = pending;
    pending = undefined;
    original.call(proto, remote, p ? p.reason : reason, p ? p.description : desc);
  };
  return (reject, reason, description) => {
    // SSH strings are bytes; keep the description one line and short.
    pending = { reason, description: description.replace(/[\r\n]+/g, " ").slice(0, 1000) };
    try {
      reject();
    } finally {
      pending = undefined;
    }
  };
}
