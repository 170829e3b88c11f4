// An agent's program with the official Anthropic TypeScript SDK and its defaults: the base URL is
// https://api.anthropic.com, the key comes from ANTHROPIC_API_KEY (the injector's inert
// placeholder), TLS trust from NODE_EXTRA_CA_CERTS. argv: "create" | "stream".
// Prints {"text":...,"id":...} or {"error":...,"status":...}.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ maxRetries: 0, timeout: 20_000 });
const params = {
  model: "claude-sonnet-4-5",
  max_tokens: 128,
  messages: [{ role: "user" as const, content: "Who is the customer?" }],
};
try {
  if (process.argv[2] === "stream") {
    const stream = client.messages.stream(params);
    let deltas = 0;
    stream.on("text", () => {
      deltas++;
    });
    const message = await stream.finalMessage();
    const text = message.content.map((b) => (b.type === "text" ? b.text : "")).join("");
    console.log(JSON.stringify({ text, id: message.id, deltas }));
  } else {
    const message = await client.messages.create(params);
    const text = message.content.map((b) => (b.type === "text" ? b.text : "")).join("");
    console.log(JSON.stringify({ text, id: message.id }));
  }
} catch (err) {
  const e = err as { status?: number; message?: string; error?: unknown };
  console.log(JSON.stringify({ error: e.message ?? String(err), status: e.status, body: e.error }));
}
