// The keyproof server that tests/test_clients_js.py starts, and plain calls to it that
// use nothing of keyproof-client: the interop tests hold other libraries against it.
export const KEYPROOF_URL = process.env.KEYPROOF_URL;
export const skip = KEYPROOF_URL ? false : "needs the server of tests/test_clients_js.py";
export const SOLANA_MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";

export async function post(path, body) {
  const response = await fetch(KEYPROOF_URL + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

export async function challenge(account, scope) {
  const { status, body } = await post("/v1/challenge", { account, scope });
  if (status !== 201) throw new Error(`challenge refused: ${JSON.stringify(body)}`);
  return body;
}

export const redeem = (message, signature) => post("/v1/token", { message, signature });

/** `text` with the character at `index` replaced by another of the same alphabet. */
export function tamper(text, index, alphabet) {
  const swapped = alphabet[(alphabet.indexOf(text[index]) + 1) % alphabet.length];
  return text.slice(0, index) + swapped + text.slice(index + 1);
}
