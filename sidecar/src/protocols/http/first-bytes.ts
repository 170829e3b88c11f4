// The first bytes an agent sends on a captured socket that was mapped by address alone (nothing
// read yet): TLS and plain HTTP are told apart by them. HTTP clients speak first, so a socket that
// stays silent past the timeout (what Node's HTTP server allows for headers) is closed.
import type { Socket } from "node:net";

/** A TLS record starts with content type 22 (handshake). */
export const TLS_HANDSHAKE = 0x16;
export const FIRST_BYTES_TIMEOUT_MS = 60_000;

/** Calls `then` once with the first chunk (the socket left paused), or never if it closes first. */
export function firstBytesOf(socket: Socket, timeoutMs: number, then: (first: Buffer) => void): void {
  const timer = setTimeout(() => {
    done();
    socket.destroy();
  }, timeoutMs);
  timer.unref();
  const onData = (chunk: Buffer) => {
    done();
    socket.pause();
    then(chunk);
  };
  const onEnd = () => {
    done();
    socket.destroy();
  };
  function done() {
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("end", onEnd);
    socket.off("error", onEnd);
  }
  socket.on("data", onData);
  socket.once("end", onEnd);
  socket.once("error", onEnd);
}
