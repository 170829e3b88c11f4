// nginx as the baseline reverse proxy: the same hop the sidecar adds, done by a C proxy with
// upstream keep-alive, so the bench can say what the sidecar costs beyond "a proxy".
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export async function startNginx(opts: {
  listenPort: number;
  upstreamPort: number;
  /** Terminate TLS (this certificate) and speak TLS upstream, verified against `upstreamCaFile` as `upstreamName`. */
  tls?: { certFile: string; keyFile: string; upstreamCaFile: string; upstreamName: string };
}): Promise<{ stop(): void; process: ChildProcess }> {
  const prefix = mkdtempSync(join(tmpdir(), "airlock-nginx-"));
  mkdirSync(join(prefix, "logs"));
  const conf = join(prefix, "nginx.conf");
  writeFileSync(
    conf,
    `daemon off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  upstream app { server 127.0.0.1:${opts.upstreamPort}; keepalive 32; }
  server {
    listen 127.0.0.1:${opts.listenPort}${opts.tls ? " ssl" : ""};${
      opts.tls
        ? `
    ssl_certificate ${opts.tls.certFile};
    ssl_certificate_key ${opts.tls.keyFile};
    ssl_session_cache off;
    ssl_session_tickets off;
    proxy_ssl_verify on;
    proxy_ssl_trusted_certificate ${opts.tls.upstreamCaFile};
    proxy_ssl_name ${opts.tls.upstreamName};
    proxy_ssl_server_name on;
    proxy_ssl_session_reuse on;`
        : ""
    }
    location / {
      proxy_pass ${opts.tls ? "https" : "http"}://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer bench-token";
    }
  }
}
`,
  );
  const nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"].find(existsSync) ?? "nginx";
  const child = spawn(nginx, ["-p", prefix, "-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += d;
  });
  await waitForPort(opts.listenPort, () => (child.exitCode !== null ? `nginx exited: ${stderr}` : undefined));
  return { process: child, stop: () => child.kill("SIGTERM") };
}

export async function waitForPort(
  port: number,
  failed: () => string | undefined,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const why = failed();
    if (why) throw new Error(why);
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, "127.0.0.1", () => {
        s.destroy();
        r(true);
      });
      s.on("error", () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}
