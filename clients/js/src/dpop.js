/**
 * DPoP (RFC 9449, specs/protocol.md §10) on the client: a per-session ES256 key made by
 * WebCrypto as non-extractable (no script, not even this one, can read its private half),
 * a proof for every request (§4.2), and the server nonces to put in them (§8, §9).
 */

import { base64urlnopad } from "@scure/base";

const P256 = { name: "ECDSA", namedCurve: "P-256" };
const ES256 = { name: "ECDSA", hash: "SHA-256" };
const encoder = new TextEncoder();

/** The key a session's tokens are bound to (`cnf.jkt`), and the proofs it signs. */
export class DPoPKey {
  #keyPair;
  #header;

  constructor(keyPair, jwk, thumbprint) {
    this.#keyPair = keyPair;
    this.#header = { typ: "dpop+jwt", alg: "ES256", jwk };
    this.thumbprint = thumbprint;
  }

  /** A fresh P-256 key pair whose private key cannot be exported. */
  static async generate() {
    const keyPair = await crypto.subtle.generateKey(P256, false, ["sign"]);
    const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", keyPair.publicKey);
    // RFC 7638 §3.2: the required members only, in lexicographic order, no whitespace.
    const thumbprint = base64urlnopad.encode(await sha256(JSON.stringify({ crv, kty, x, y })));
    return new DPoPKey(keyPair, { kty, crv, x, y }, thumbprint);
  }

  get keyPair() {
    return this.#keyPair;
  }

  /**
   * A proof for one request: `htu` is the URL without query and fragment, `ath` binds
   * the access token it travels with. WebCrypto's ECDSA signature is already JWS's R‖S.
   * @param {{method: string, url: string, accessToken?: string, nonce?: string | null}} request
   */
  async proof({ method, url, accessToken, nonce }) {
    const claims = {
      jti: base64urlnopad.encode(crypto.getRandomValues(new Uint8Array(16))),
      htm: method,
      htu: withoutQuery(url),
      iat: Math.floor(Date.now() / 1000),
    };
    if (accessToken !== undefined) claims.ath = base64urlnopad.encode(await sha256(accessToken));
    if (nonce) claims.nonce = nonce;
    const input = `${segment(this.#header)}.${segment(claims)}`;
    const signature = await crypto.subtle.sign(
      ES256,
      this.#keyPair.privateKey,
      encoder.encode(input),
    );
    return `${input}.${base64urlnopad.encode(new Uint8Array(signature))}`;
  }
}

/** The latest `DPoP-Nonce` each server gave (RFC 9449 §8.2: any answer may bring one). */
export class DPoPNonces {
  #byOrigin = new Map();

  /** @param {string} url */
  get(url) {
    return this.#byOrigin.get(new URL(url).origin) ?? null;
  }

  /**
   * Keep the nonce an answer carries; true when the answer asks for the request again
   * with it (`use_dpop_nonce`: 400 at the token endpoint, 401 at a resource server).
   * @param {string} url @param {Response} response
   */
  async remember(url, response) {
    const nonce = response.headers.get("dpop-nonce");
    if (!nonce) return false;
    const renewed = nonce !== this.get(url);
    this.#byOrigin.set(new URL(url).origin, nonce);
    return renewed && (await asksForNonce(response));
  }
}

async function asksForNonce(response) {
  if (response.status === 401) {
    return /\bDPoP\b.*error="use_dpop_nonce"/.test(response.headers.get("www-authenticate") ?? "");
  }
  if (response.status !== 400) return false;
  const body = await response
    .clone()
    .json()
    .catch(() => null);
  return body?.error === "use_dpop_nonce";
}

function withoutQuery(url) {
  const parsed = new URL(url);
  parsed.search = "";
  parsed.hash = "";
  return parsed.href;
}

function segment(object) {
  return base64urlnopad.encode(encoder.encode(JSON.stringify(object)));
}

async function sha256(text) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}
