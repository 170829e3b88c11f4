// Path rules against upstreams that read paths loosely: a raw-socket upstream logs exactly what
// reaches it. Restrictive rules (deny, requireApproval) must catch every spelling a case-folding or
// `;`-stripping upstream (Spring, Tomcat, IIS) would serve as the protected path; allow rules match
// the exact spelling only; and what reaches the upstream is the path that was judged.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { policy, type Sidecar, startSidecar } from "./harness.ts";
import { type RawUpstream, rawRequest, requestLine, startRawUpstream } from "./raw.ts";

let upstream: RawUpstream;
let sc: Sidecar;
let port: number;

beforeAll(async () => {
  upstream = await startRawUpstream();
  sc = await startSidecar({
    policies: [
      policy("paths", {
        connections: [
          {
            name: "api",
            protocol: "http",
            target: { host: "127.0.0.1", port: upstream.port },
            tls: { mode: "disable" },
          },
        ],
        rules: [
          {
            name: "read-customers",
            action: "allow",
            match: { http: { methods: ["GET"], paths: ["/customers/**"] } },
          },
          {
            name: "read-admin-docs",
            action: "allow",
            match: { http: { methods: ["GET"], paths: ["/admin/docs"] } },
          },
          { name: "no-admin", action: "deny", match: { http: { paths: ["/admin/**"] } } },
          { name: "no-exports", action: "deny", match: { http: { paths: ["/customers/*/export"] } } },
        ],
      }),
    ],
  });
  port = Number(new URL(await sc.listen("api")).port);
});

afterAll(async () => {
  await sc?.close();
  await upstream?.close();
});

const get = (path: string) =>
  rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n`);

describe("deny rules match case-insensitively and ignore ; path parameters", () => {
  it.each([
    "/admin/x",
    "/ADMIN/x",
    "/Admin/x",
    "/admin;x=1/k",
    "/ADMIN;jsessionid=abc/k",
    "/;x/admin/k",
    "/%41dmin/x",
    "/admin%3Bx/k",
    "/customers/7/EXPORT",
    "/customers/7/export;format=csv",
    "/customers;a=b/7/export",
    "/admin/docs/../keys",
  ])("GET %s → 403 no-admin/no-exports, nothing reaches the upstream", async (path) => {
    const before = upstream.heads.length;
    const r = await get(path);
    expect(r.status, r.text).toBe(403);
    expect(JSON.parse(r.text)).toMatchObject({ error: "denied" });
    expect(JSON.parse(r.text).rule).toMatch(/^no-(admin|exports)$/);
    expect(upstream.heads.length).toBe(before);
  });
});

describe("allow rules match the exact spelling only (anything else falls to default deny)", () => {
  it.each(["/CUSTOMERS/1", "/Customers/1", "/customers;x=1/1"])("GET %s → 403 default deny", async (path) => {
    const before = upstream.heads.length;
    const r = await get(path);
    expect(r.status, r.text).toBe(403);
    expect(JSON.parse(r.text)).toMatchObject({ error: "denied", rule: null });
    expect(upstream.heads.length).toBe(before);
  });

  it("an allowed spelling that a deny rule also covers loosely is still denied (deny first)", async () => {
    // /admin/docs is allowed exactly, but the deny on /admin/** is evaluated first.
    const r = await get("/admin/docs");
    expect(r.status).toBe(403);
  });
});

describe("what is matched is what is forwarded", () => {
  it.each([
    ["/customers/1", "GET /customers/1 HTTP/1.1"],
    ["/customers//2/./", "GET /customers/2/ HTTP/1.1"],
    ["/customers/%33", "GET /customers/3 HTTP/1.1"],
    ["/customers/a%20b?q=%2F..", "GET /customers/a%20b?q=%2F.. HTTP/1.1"],
    ["/customers/x/../4", "GET /customers/4 HTTP/1.1"],
    ["/customers/5;v=1", "GET /customers/5;v=1 HTTP/1.1"],
  ])("GET %s reaches the upstream as %j", async (path, line) => {
    const before = upstream.heads.length;
    const r = await get(path);
    expect(r.status, r.text).toBe(200);
    expect(upstream.heads.length).toBe(before + 1);
    expect(requestLine(upstream.heads.at(-1) ?? "")).toBe(line);
  });
});
