// The servers that tests/test_clients_js.py starts, and plain calls to them that use
// nothing of keyproof-client: the interop tests hold other libraries against them.
// KEYPROOF_URL: 60 s tokens. SESSIONS_URL: 10 s tokens, DPoP nonces, escrow:release only
// with DPoP; RESOURCE_URL: tests/resource_server.py, a keyproof.guard for SESSIONS_URL.
export const { KEYPROOF_URL, SESSIONS_URL, RESOURCE_URL } = process.env;
export const skip = KEYPROOF_URL ? false : "needs the server of tests/test_clients_js.py";
export const skipSessions =
  SESSIONS_URL && RESOURCE_URL ? false : "needs the servers of tests/test_clients_js.py";
export const SOLANA_MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";

export async function post(path, body, base = KEYPROOF_URL) {
  const response = await fetch(base + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

export async function challenge(account, scope, extra = {}, base = KEYPROOF_URL) {
  const { status, body } = await post("/v1/challenge", { account, scope, ...extra }, base);
  if (status !== 201) throw new Error(`challenge refused: ${JSON.stringify(body)}`);
  return body;
}

export const redeem = (message, signature) => post("/v1/token", { message, signature });

/** `text` with the character at `index` replaced by another of the same alphabet. */
export function tamper(text, index, alphabet) {
  const swapped = alphabet[(alphabet.indexOf(text[index]) + 1) % alphabet.length];
  return text.slice(0, index) + swapped + text.slice(index + 1);
}
