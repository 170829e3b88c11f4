// The addon against real sockets on loopback. Without the REDIRECT rule (that is test/netns), a
// socket has either no conntrack entry (ENOENT) or one whose original destination is the address
// actually dialled; both are what production code must handle.
import { once } from "node:events";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import {
  loadNativeAddon,
  NativeAddonError,
  nativeAddonStatus,
  OriginalDestinationError,
  originalDst,
  socketFd,
} from "./original-dst.ts";

const status = nativeAddonStatus();

async function accepted(
  host: string,
): Promise<{ server: Socket; client: Socket; port: number; close(): void }> {
  const srv = createServer();
  srv.listen(0, host);
  await once(srv, "listening");
  const port = (srv.address() as AddressInfo).port;
  const client = connect(port, host);
  const [server] = (await once(srv, "connection")) as [Socket];
  return {
    server,
    client,
    port,
    close() {
      client.destroy();
      server.destroy();
      srv.close();
    },
  };
}

describe("native addon loader", () => {
  it("explains how to build the addon when it is missing", () => {
    expect(() => loadNativeAddon("/nonexistent/airlock_native.node")).toThrow(NativeAddonError);
    expect(() => loadNativeAddon("/nonexistent/airlock_native.node")).toThrow(/run npm run build:native/);
  });
  it("refuses a file that is not the addon", () => {
    expect(() => loadNativeAddon(new URL(import.meta.url).pathname)).toThrow(/does not load|not the airlock/);
  });
});

describe.skipIf(!status.ok)("original_dst on loopback sockets", () => {
  it("takes the fd of a connected socket", async () => {
    const c = await accepted("127.0.0.1");
    try {
      expect(socketFd(c.server)).toBeGreaterThan(2);
    } finally {
      c.close();
    }
  });

  for (const host of ["127.0.0.1", "::1"]) {
    it(`${host}: ENOENT or the dialled address, never something else`, async () => {
      const c = await accepted(host);
      try {
        const dst = originalDst(c.server);
        expect(dst).toEqual({ address: host, port: c.port, family: host.includes(":") ? 6 : 4 });
      } catch (err) {
        expect(err).toBeInstanceOf(OriginalDestinationError);
        expect((err as OriginalDestinationError).code).toBe("ENOENT");
      }
      c.close();
    });
  }

  it("a destroyed socket has no fd", async () => {
    const c = await accepted("127.0.0.1");
    c.server.destroy();
    expect(() => originalDst(c.server)).toThrow(/no file descriptor/);
    c.close();
  });

  it("rejects a bad fd from C with the errno name", () => {
    const addon = loadNativeAddon();
    expect(() => addon.original_dst(-1)).toThrow(/fd must be >= 0/);
    expect(() => addon.original_dst(0x7ffffff)).toThrow(expect.objectContaining({ code: "EBADF" }));
    // @ts-expect-error wrong type on purpose
    expect(() => addon.original_dst("3")).toThrow(/fd must be a number/);
  });
});

if (!status.ok) console.warn(`[original-dst] skipped: ${status.reason}`);
