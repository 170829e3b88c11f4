// Fuzz target: the PostgreSQL frontend (agent → sidecar) framing and message readers
// (sidecar/src/protocols/postgres/framing.ts, protocol.ts, startup.ts), driven the way the
// session drives them: startup-phase packets until a StartupMessage (an SSLRequest/GSSENCRequest
// keeps the startup phase, a CancelRequest ends the connection), then typed messages, each read
// with the reader the session uses for its type. The first input byte seeds how the stream is cut
// into chunks. Invariants:
//  - Nothing but a ProtocolError (with a SQLSTATE and a message) ever escapes: the session turns
//    that into an ErrorResponse and closes; anything else would be an unhandled exception.
//  - Chunking does not matter: the stream delivered whole and delivered in random chunks gives the
//    same frames, the same readings and the same error at the same place.
//  - Memory is bounded: after the framer asks for more bytes it holds less than one message the
//    limits allow (an oversized length is refused from its header, before its body is buffered).
//  - Texts are what the server receives: the string judged for a Query or Parse re-encodes to
//    exactly the bytes forwarded (no replaced bytes, no dropped byte-order mark).
import { FrontendFramer } from "../../sidecar/src/protocols/postgres/framing.ts";
import {
  ProtocolError,
  parseBind,
  parseExecute,
  parseParse,
  parseQuery,
  parseTarget,
  T,
} from "../../sidecar/src/protocols/postgres/protocol.ts";
import { parseStartupPacket } from "../../sidecar/src/protocols/postgres/startup.ts";
import { check, fail } from "./support/invariant.ts";

const LIMITS = { maxStartupBytes: 10_000, maxQueryBytes: 2048, maxMessageBytes: 4096 };
const MAX_HELD = Math.max(LIMITS.maxStartupBytes, LIMITS.maxQueryBytes + 5, LIMITS.maxMessageBytes + 5);

function sameBytes(text: string, raw: Buffer, what: string, input: Buffer): void {
  const again = Buffer.from(text, "utf8");
  if (!again.equals(raw))
    fail(`the decoded ${what} is not the bytes forwarded`, {
      input: input.toString("hex"),
      raw: raw.toString("hex"),
      decoded: again.toString("hex"),
    });
}

/** What the session reads from one typed frame (throws ProtocolError like the session would). */
function readMessage(type: number, payload: Buffer, input: Buffer): string {
  switch (type) {
    case T.Query: {
      const q = parseQuery(payload);
      sameBytes(q, payload.subarray(0, payload.length - 1), "Query text", input);
      return `Q ${JSON.stringify(q)}`;
    }
    case T.Parse: {
      const p = parseParse(payload);
      const nameEnd = payload.indexOf(0);
      const queryEnd = payload.indexOf(0, nameEnd + 1);
      sameBytes(p.name, payload.subarray(0, nameEnd), "statement name", input);
      sameBytes(p.query, payload.subarray(nameEnd + 1, queryEnd), "Parse query", input);
      return `P ${JSON.stringify(p)}`;
    }
    case T.Bind:
      return `B ${JSON.stringify(parseBind(payload))}`;
    case T.Describe:
      return `D ${JSON.stringify(parseTarget(payload, "Describe"))}`;
    case T.Close:
      return `C ${JSON.stringify(parseTarget(payload, "Close"))}`;
    case T.Execute:
      return `E ${JSON.stringify(parseExecute(payload))}`;
    case T.Sync:
    case T.Flush:
    case T.Terminate:
    case T.CopyData:
    case T.CopyDone:
    case T.CopyFail:
    case T.FunctionCall:
      return `${String.fromCharCode(type)} ${payload.length}`;
    default:
      throw new ProtocolError(`unexpected message type ${type}`);
  }
}

/** Feeds `chunks` through a framer like the session; returns what it saw and how it ended. */
function drive(chunks: Buffer[], input: Buffer): string[] {
  const framer = new FrontendFramer(LIMITS);
  const seen: string[] = [];
  try {
    for (const chunk of chunks) {
      framer.push(chunk);
      for (;;) {
        const f = framer.next();
        if (!f) break;
        if (f.type === 0) {
          const p = parseStartupPacket(f);
          seen.push(`startup ${JSON.stringify(p)}`);
          if (p.kind === "cancel") return [...seen, "end: cancel"];
          if (p.kind === "startup") framer.endStartup();
        } else seen.push(readMessage(f.type, f.payload, input));
        if (f.type === T.Terminate) return [...seen, "end: terminate"];
      }
      check(framer.buffered <= MAX_HELD, "the framer holds more than one message's limit", {
        input: input.toString("hex"),
        buffered: framer.buffered,
      });
    }
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    check(
      /^[0-9A-Z]{5}$/.test(err.code) && err.message.length > 0,
      "a protocol error without SQLSTATE or message",
      {
        code: err.code,
        message: err.message,
      },
    );
    return [...seen, `error ${err.code} ${err.message}`];
  }
  return [...seen, `end: need more (${framer.buffered} buffered)`];
}

export function fuzz(data: Buffer): void {
  if (data.length < 1) return;
  let seed = (data[0] as number) | 1;
  const stream = data.subarray(1);
  const whole = drive([stream], data);
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; ) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const n = 1 + ((seed >>> 16) % 9);
    chunks.push(stream.subarray(at, at + n));
    at += n;
  }
  const split = drive(chunks, data);
  check(JSON.stringify(whole) === JSON.stringify(split), "chunking changes what the framer reads", {
    input: data.toString("hex"),
    whole,
    split,
  });
}
