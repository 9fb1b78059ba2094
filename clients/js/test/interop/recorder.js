// What keyproof-client sends and is answered, seen from outside: a fetch that keeps every
// exchange, and a signer that counts how often the "wallet" was asked.
import { decodeJwt } from "jose";

import { keySigner } from "keyproof-client/keys";

/** fetch keeping {url, method, headers, body, status, responseHeaders, answer} of each call. */
export function recordingFetch() {
  const exchanges = [];
  const recording = async (input, init) => {
    const request = new Request(input, init);
    const body = await request.clone().text();
    const response = await fetch(request);
    exchanges.push({
      url: request.url,
      method: request.method,
      headers: request.headers,
      body,
      status: response.status,
      responseHeaders: response.headers,
      answer: await response
        .clone()
        .json()
        .catch(() => null),
    });
    return response;
  };
  recording.exchanges = exchanges;
  /** The token requests of one grant: "refresh_token" or the signed challenge (JSON). */
  recording.tokenRequests = (grant) =>
    exchanges.filter(
      (e) =>
        e.url.endsWith("/v1/token") &&
        e.body.startsWith("grant_type=refresh_token") === (grant === "refresh_token"),
    );
  return recording;
}

/** The claims of the DPoP proof an exchange carried (null without one). */
export function proofClaims(exchange) {
  const proof = exchange.headers.get("dpop");
  return proof ? decodeJwt(proof) : null;
}

/** keySigner(key), counting the signatures it makes: each one a wallet prompt. */
export function countingSigner(key) {
  const signer = keySigner(key);
  const counting = {
    signatures: 0,
    account: () => signer.account(),
    sign: (challenge) => {
      counting.signatures += 1;
      return signer.sign(challenge);
    },
  };
  return counting;
}
