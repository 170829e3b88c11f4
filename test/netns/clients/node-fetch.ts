// An agent's Node program with fetch's defaults (no proxy agent, the CA list extended only by
// NODE_EXTRA_CA_CERTS). argv: URL [header JSON]. Prints {"status","contentType","body"} or {"error"}.
const [url = "", headers = "{}"] = process.argv.slice(2);
try {
  const res = await fetch(url, { headers: JSON.parse(headers) as Record<string, string> });
  const body = await res.text();
  console.log(JSON.stringify({ status: res.status, contentType: res.headers.get("content-type"), body }));
} catch (err) {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  console.log(JSON.stringify({ error: String(err), cause: cause?.code ?? cause?.message }));
}
