// Serving certificate from files (a Secret volume, cert-manager, or the bootstrap), reloaded when
// they change: Secret volumes are updated in place by the kubelet (a symlink swap), so the
// directory is watched and also polled, and a pair that does not load keeps the previous one.
import { type FSWatcher, watch as fsWatch } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { createSecureContext } from "node:tls";

export interface TlsMaterial {
  cert: string;
  key: string;
}

export interface TlsFileSource {
  /** The material loaded last (valid). */
  current(): TlsMaterial;
  /** Re-reads the files; resolves true if the material changed and was applied. */
  reload(): Promise<boolean>;
  close(): void;
}

export interface TlsFileOptions {
  certFile: string;
  keyFile: string;
  /** Called with new, valid material. */
  onChange: (material: TlsMaterial) => void;
  onError?: (err: Error) => void;
  /** Poll interval as a backstop for missed watch events; default 30 s, 0 disables. */
  pollMs?: number;
}

async function readPair(certFile: string, keyFile: string): Promise<TlsMaterial> {
  const [cert, key] = await Promise.all([readFile(certFile, "utf8"), readFile(keyFile, "utf8")]);
  // Throws on a malformed pair or a key that does not match the certificate.
  createSecureContext({ cert, key });
  return { cert, key };
}

export async function loadTlsFiles(opts: TlsFileOptions): Promise<TlsFileSource> {
  let material = await readPair(opts.certFile, opts.keyFile);
  let closed = false;
  let pending: Promise<boolean> | undefined;
  /** A change was signalled while a read was under way: that read may have missed it. */
  let again = false;
  const readOnce = async (): Promise<boolean> => {
    try {
      const next = await readPair(opts.certFile, opts.keyFile);
      if (next.cert === material.cert && next.key === material.key) return false;
      material = next;
      opts.onChange(next);
      return true;
    } catch (err) {
      // Mid-rotation the cert and key may briefly disagree; the next event or poll retries.
      opts.onError?.(err as Error);
      return false;
    }
  };
  const reload = (): Promise<boolean> => {
    if (pending) {
      again = true;
      return pending;
    }
    pending = (async () => {
      let changed = false;
      try {
        do {
          again = false;
          changed = (await readOnce()) || changed;
        } while (again && !closed);
        return changed;
      } finally {
        pending = undefined;
      }
    })();
    return pending;
  };
  const watchers: FSWatcher[] = [];
  let debounce: NodeJS.Timeout | undefined;
  for (const dir of new Set([dirname(opts.certFile), dirname(opts.keyFile)])) {
    try {
      const w = fsWatch(dir, () => {
        if (closed) return;
        clearTimeout(debounce);
        debounce = setTimeout(() => void reload(), 200);
        debounce.unref();
      });
      w.on("error", () => {
        // Polling still covers us.
      });
      watchers.push(w);
    } catch {
      // A directory that cannot be watched is polled.
    }
  }
  const pollMs = opts.pollMs ?? 30_000;
  const poll = pollMs > 0 ? setInterval(() => void reload(), pollMs) : undefined;
  poll?.unref();
  return {
    current: () => material,
    reload,
    close() {
      closed = true;
      clearTimeout(debounce);
      if (poll) clearInterval(poll);
      for (const w of watchers) w.close();
    },
  };
}
