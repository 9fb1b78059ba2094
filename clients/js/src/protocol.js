/**
 * The calls of keyproof's sign-in (specs/protocol.md §1): ask a challenge for an account,
 * redeem the signed text for a token, refresh the session (§11). Endpoints come from the
 * issuer's RFC 8414 metadata, whose `issuer` must be the one asked for (§3.3). With DPoP
 * (the default, §10) the challenge names the session's key and every token request
 * carries a proof by it.
 */

import { DPoPKey, DPoPNonces } from "./dpop.js";
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
export async function signIn({
  issuer,
  signer,
  scope,
  audience,
  dpop = true,
  fetch = defaultFetch(),
  ...rest
}) {
  const metadata = await discover(issuer, { fetch });
  const nonces = new DPoPNonces();
  const request = { scope: Array.isArray(scope) ? scope.join(" ") : scope, audience };
  const tokens = (body, key) => tokenRequest({ fetch, metadata, nonces, key, body });
  const signInOnce = async () => {
    const key = dpop ? await DPoPKey.generate() : null;
    const account = await signer.account();
    const body = { ...request, account, dpop_jkt: key?.thumbprint };
    const challenge = await requestChallenge(metadata, body, fetch);
    const signed = await signer.sign(challenge);
    return { ...(await tokens(JSON.stringify(signed), key)), account: challenge.account, key };
  };
  const refresh = async ({ account, key, refreshToken }) => {
    const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken });
    return { ...(await tokens(form, key)), account, key };
  };
  return Session.start({ signIn: signInOnce, refresh, fetch, nonces, ...rest });
}

/**
 * `POST` to the token endpoint, with a proof when there is a key. A `use_dpop_nonce`
 * answer is asked once more with the nonce it gave (RFC 9449 §8).
 */
async function tokenRequest({ fetch, metadata, nonces, key, body }) {
  const url = metadata.token_endpoint;
  const headers = typeof body === "string" ? { "Content-Type": "application/json" } : {};
  const send = async () => {
    if (key) headers.DPoP = await key.proof({ method: "POST", url, nonce: nonces.get(url) });
    return fetchOrThrow(fetch, url, { method: "POST", headers, body });
  };
  let response = await send();
  if (key && (await nonces.remember(url, response))) response = await send();
  return jsonObject(url, response);
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
 * @param {{account: string, scope?: string, audience?: string, origin?: string, dpop_jkt?: string}} body
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
  return jsonObject(url, await fetchOrThrow(fetch, url, init));
}

async function fetchOrThrow(fetch, url, init) {
  try {
    return await fetch(url, init);
  } catch (cause) {
    throw unreachable(url, cause);
  }
}

async function jsonObject(url, response) {
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
