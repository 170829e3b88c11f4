// Errors a user meets when starting things (`airlock demo`, `airlock sidecar`), turned into one
// message that says what happened and what to do. Anything else stays a real crash with its stack.
import { CredentialFileError } from "../../sidecar/src/approvals/credentials.ts";
import { PolicyFileError } from "../../sidecar/src/sources/files.ts";

interface ListenError {
  code?: string;
  address?: string;
  port?: number;
  syscall?: string;
}

export function startupError(e: unknown): { message: string; code: number } | undefined {
  if (e instanceof PolicyFileError) return { message: e.message, code: 2 };
  if (e instanceof CredentialFileError) return { message: e.message, code: 2 };
  const err = e as ListenError;
  if (err?.syscall === "listen" && (err.code === "EADDRINUSE" || err.code === "EACCES")) {
    const where = `${err.address ?? "127.0.0.1"}:${err.port ?? "?"}`;
    return {
      code: 1,
      message:
        err.code === "EADDRINUSE"
          ? `port ${where} is already in use, probably by another \`npm start\`/\`airlock demo\` or \`airlock sidecar\`: stop that one first (or find it with \`ss -ltnp 'sport = :${err.port}'\`)`
          : `not allowed to listen on ${where} (${err.code})`,
    };
  }
  return undefined;
}
