// A TCP relay in front of a server (the API server, usually) that a test can cut and restore:
// an outage as a client sees it, without stopping a server other test files share.
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";

export interface Relay {
  /** Opens the relay (again, on the same port after a cut) and returns that port. */
  up(): Promise<number>;
  /** Closes the relay and every connection through it. */
  down(): Promise<void>;
}

export function relay(target: URL): Relay {
  let server: Server | undefined;
  let port = 0;
  const sockets = new Set<Socket>();
  return {
    async up() {
      const s = createServer((client) => {
        const upstream = tcpConnect(Number(target.port), target.hostname);
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        const close = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on("error", close).on("close", close);
        upstream.on("error", close).on("close", close);
      });
      await new Promise<void>((resolve) => s.listen(port, "127.0.0.1", resolve));
      port = (s.address() as { port: number }).port;
      server = s;
      return port;
    },
    async down() {
      for (const s of sockets) s.destroy();
      sockets.clear();
      const s = server;
      server = undefined;
      await new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()));
    },
  };
}
