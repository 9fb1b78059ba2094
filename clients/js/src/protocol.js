/**
 * The two calls of keyproof's sign-in (specs/protocol.md §1): ask a challenge for an
 * account, redeem the signed text for a token. Endpoints come from the issuer's
 * RFC 8414 metadata, whose `issuer` must be the one asked for (§3.3).
 */

import { KeyproofError, unexpectedResponse, unreachable } from "./errors.js";
import { Session } from "./session.js";

const METADATA_PATH = "/.well-known/oauth-authorization-server";

/** `fetch`, bound so that a browser does not call it on the wrong receiver. */
export function defaultFetch() {
  return (input, init) => globalThis.fetch(input, init);
}

/**
 * Sign in with any signer; the family-specific entry points wrap this.
 * @param {import("./index.js").SignInOptions & {signer: import("./index.js").Signer}} options
 * @returns {Promise<Session>}
 */
export async function signIn({ issuer, signer, scope, audience, fetch = defaultFetch(), ...rest }) {
  const metadata = await discover(issuer, { fetch });
  const request = { scope: Array.isArray(scope) ? scope.join(" ") : scope, audience };
  const obtain = async () => {
    const challenge = await requestChallenge(
      metadata,
      { ...request, account: await signer.account() },
      fetch,
    );
    const signed = await signer.sign(challenge);
    const grant = await call(fetch, metadata.token_endpoint, postJson(signed));
    return { ...grant, account: challenge.account };
  };
  return Session.start({ obtain, fetch, ...rest });
}

/**
 * The issuer's metadata (RFC 8414).
 * @param {string} issuer
 * @param {{fetch?: typeof globalThis.fetch}} [options]
 */
export async function discover(issuer, { fetch = defaultFetch() } = {}) {
  const base = issuer.replace(/\/+$/, "");
  const metadata = await call(fetch, base + METADATA_PATH, { method: "GET" });
  if (typeof metadata.issuer !== "string" || metadata.issuer.replace(/\/+$/, "") !== base) {
    throw unexpectedResponse(`the metadata at ${base} names another issuer`);
  }
  for (const name of ["challenge_endpoint", "token_endpoint"]) {
    if (typeof metadata[name] !== "string") throw unexpectedResponse(`the metadata has no ${name}`);
  }
  return metadata;
}

/**
 * `POST /v1/challenge`: the text to sign and its nonce.
 * @param {{challenge_endpoint: string}} metadata
 * @param {{account: string, scope?: string, audience?: string, origin?: string}} body
 * @param {typeof globalThis.fetch} fetch
 */
export async function requestChallenge(metadata, body, fetch = defaultFetch()) {
  const challenge = await call(fetch, metadata.challenge_endpoint, postJson(body));
  if (typeof challenge.message !== "string" || typeof challenge.account !== "string") {
    throw unexpectedResponse("the challenge has no message");
  }
  return challenge;
}

function postJson(body) {
  return {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
}

/** A keyproof call: its JSON object, or a KeyproofError. */
async function call(fetch, url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (cause) {
    throw unreachable(url, cause);
  }
  const refused = await KeyproofError.fromResponse(response.clone());
  if (refused) throw refused;
  const body = await response.json().catch(() => null);
  if (!response.ok || body === null || typeof body !== "object" || Array.isArray(body)) {
    throw unexpectedResponse(
      `unexpected answer from ${url} (status ${response.status})`,
      response.status,
    );
  }
  return body;
}
