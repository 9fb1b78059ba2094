// keyproof-client against a real keyproof: every key type signs in to a DPoP session and
// the token verifies with jose; the session refreshes before expiry (one refresh for
// concurrent callers), rotates its refresh token, and signs in again only when the
// session has ended; a bearer session (dpop: false) renews by signing in again, also
// once on a 401; keyproof's refusals arrive as KeyproofError.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";

import { ed25519 } from "@noble/curves/ed25519.js";
import { base64urlnopad } from "@scure/base";
import {
  SignJWT,
  calculateJwkThumbprint,
  createRemoteJWKSet,
  decodeJwt,
  exportJWK,
  jwtVerify,
} from "jose";

import { KeyproofError, discover, signIn } from "keyproof-client";
import { accountOf, signInWithKey } from "keyproof-client/keys";

import { countingSigner, recordingFetch } from "./recorder.js";
import { KEYPROOF_URL, post, skip } from "./server.js";

const KEYS = {
  ed25519: () => ({ type: "ed25519", secretKey: randomBytes(32) }),
  secp256k1: () => ({ type: "secp256k1", secretKey: randomBytes(32) }),
  ethereum: () => ({ type: "ethereum", secretKey: randomBytes(32) }),
  solana: () => ({ type: "solana", secretKey: randomBytes(32) }),
};

/** The RFC 7638 thumbprint of a session's DPoP key, computed by jose. */
async function thumbprintOf(session) {
  return calculateJwkThumbprint(await exportJWK(session.dpopKey.publicKey));
}

for (const [type, create] of Object.entries(KEYS)) {
  test(
    `a ${type} key signs in to a DPoP session and jose verifies the token against the JWKS`,
    { skip },
    async () => {
      const key = create();
      const session = await signInWithKey({ issuer: KEYPROOF_URL, key, scope: "profile:read" });
      const jwks = createRemoteJWKSet(new URL(`${KEYPROOF_URL}/.well-known/jwks.json`));
      const { payload, protectedHeader } = await jwtVerify(session.accessToken, jwks, {
        issuer: KEYPROOF_URL,
        audience: KEYPROOF_URL,
        typ: "at+jwt",
        algorithms: ["Ed25519"],
      });
      assert.equal(protectedHeader.alg, "Ed25519");
      assert.equal(session.tokenType, "DPoP");
      assert.deepEqual(payload.cnf, { jkt: await thumbprintOf(session) });
      assert.equal(payload.sub, session.account);
      assert.equal(payload.scope, "profile:read");
      assert.ok(session.account.endsWith(accountOf(key).split(":").at(-1)));
      const tampered =
        session.accessToken.slice(0, -4) + (session.accessToken.endsWith("AAAA") ? "BBBB" : "AAAA");
      await assert.rejects(jwtVerify(tampered, jwks, { typ: "at+jwt" }), {
        code: "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
      });
    },
  );
}

test(
  "the token is refreshed shortly before it expires, once for concurrent callers, without a signature",
  { skip },
  async () => {
    let clock = 1_900_000_000;
    const fetch = recordingFetch();
    const signer = countingSigner(KEYS.ed25519());
    const session = await signIn({ issuer: KEYPROOF_URL, signer, fetch, now: () => clock });
    const first = session.accessToken;
    assert.equal(session.expiresAt, clock + 60);
    clock = session.expiresAt - 31;
    assert.equal(await session.token(), first);
    clock = session.expiresAt - 29;
    const [a, b, c] = await Promise.all([session.token(), session.token(), session.renew()]);
    assert.equal(a, b);
    assert.equal(c, undefined);
    assert.notEqual(a, first);
    assert.equal(fetch.tokenRequests("refresh_token").length, 1);
    assert.equal(signer.signatures, 1);
    assert.equal(session.tokenType, "DPoP");
  },
);

/** A DPoP proof for the token endpoint by `privateKey`, built by jose. */
async function proofBy({ privateKey, publicKey }, tokenEndpoint) {
  return new SignJWT({ htm: "POST", htu: tokenEndpoint, jti: randomBytes(16).toString("hex") })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await exportJWK(publicKey) })
    .setIssuedAt()
    .sign(privateKey);
}

/** A refresh by someone holding `refreshToken` and a key of their own. */
async function stolenRefresh(refreshToken) {
  const thief = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
    "sign",
  ]);
  const tokenEndpoint = `${KEYPROOF_URL}/v1/token`;
  const response = await fetch(tokenEndpoint, {
    method: "POST",
    headers: { DPoP: await proofBy(thief, tokenEndpoint) },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken }),
  });
  return { status: response.status, body: await response.json() };
}

const refreshTokens = (fetch) =>
  fetch.exchanges.map((e) => e.answer?.refresh_token).filter(Boolean);

test(
  "each refresh rotates the refresh token; a used one coming back ends the session",
  { skip },
  async () => {
    const fetch = recordingFetch();
    const signer = countingSigner(KEYS.ethereum());
    const session = await signIn({ issuer: KEYPROOF_URL, signer, fetch, scope: "profile:read" });
    const firstKey = session.dpopKey;
    // The live token with another key: refused, and the session lives on (§11.2 step 6).
    const [live] = refreshTokens(fetch);
    const foreign = await stolenRefresh(live);
    assert.deepEqual([foreign.status, foreign.body.error], [400, "invalid_dpop_proof"]);
    await session.renew();
    await session.renew();
    const [first, second, third] = refreshTokens(fetch);
    assert.equal(new Set([first, second, third]).size, 3);
    assert.equal(signer.signatures, 1);
    // A used token is refused whoever sends it, and the whole session ends (RFC 9700 §4.14.2).
    const reused = await stolenRefresh(first);
    assert.deepEqual([reused.status, reused.body.reason], [400, "refresh_token_reused"]);
    // The session's own next refresh is refused: it signs in again, with a new key.
    await session.renew();
    assert.deepEqual(
      fetch.tokenRequests("refresh_token").map((e) => e.answer.reason ?? "ok"),
      ["ok", "ok", "session_revoked"],
    );
    assert.equal(signer.signatures, 2);
    assert.notEqual(session.dpopKey, firstKey);
  },
);

test("a session revoked elsewhere falls back to a new sign-in", { skip }, async () => {
  const fetch = recordingFetch();
  const signer = countingSigner(KEYS.solana());
  const session = await signIn({ issuer: KEYPROOF_URL, signer, fetch });
  const account = session.account;
  // Signed out on another device: RFC 7009 revocation of the refresh token.
  assert.equal((await post("/v1/revoke", { token: refreshTokens(fetch)[0] })).status, 200);
  await session.renew();
  const [refused] = fetch.tokenRequests("refresh_token");
  assert.deepEqual([refused.status, refused.answer.reason], [400, "refresh_token_invalid"]);
  assert.equal(signer.signatures, 2);
  assert.equal(session.account, account);
  assert.equal(session.tokenType, "DPoP");
});

test(
  "a refresh that fails without ending the session is thrown, the wallet not asked",
  { skip },
  async () => {
    let down = false;
    // While "down", the token endpoint is reached at a port nothing listens on.
    const fetch = (input, init) =>
      globalThis.fetch(down ? String(input).replace(/:\d+\//, ":9/") : input, init);
    const signer = countingSigner(KEYS.ed25519());
    const session = await signIn({ issuer: KEYPROOF_URL, signer, fetch });
    down = true;
    await assert.rejects(session.renew(), { status: 0, reason: "unreachable" });
    down = false;
    await session.renew();
    assert.equal(signer.signatures, 1);
  },
);

/** A signed escrow release for /v1/actions/verify ("Signed actions"), by an ed25519 did:key. */
function releaseRequest(secretKey, audience = KEYPROOF_URL) {
  const action = {
    service: "Acme Escrow",
    audience: KEYPROOF_URL,
    chain: "did:key",
    type: "escrow.release",
    object: "escrow-42",
    id: randomBytes(16).toString("hex"),
    deadline: Math.floor(Date.now() / 1000) + 600,
  };
  // RFC 8785 for a flat object of ASCII strings and integers: sorted keys, no spaces.
  const canonical = JSON.stringify(Object.fromEntries(Object.entries(action).sort()));
  const signed = new TextEncoder().encode(`keyproof-action-v1\n${canonical}`);
  const expect = {
    service: action.service,
    audience,
    type: action.type,
    object: action.object,
    scope: "escrow:release",
  };
  const body = {
    action,
    signature: base64urlnopad.encode(ed25519.sign(signed, secretKey)),
    expect,
  };
  return [
    `${KEYPROOF_URL}/v1/actions/verify`,
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) },
  ];
}

test(
  "a bearer session: a revoked token gets a 401, the session signs in again and retries once",
  { skip },
  async () => {
    const key = KEYS.ed25519();
    const fetch = recordingFetch();
    const session = await signInWithKey({
      issuer: KEYPROOF_URL,
      key,
      scope: "escrow:release",
      fetch,
      dpop: false,
    });
    assert.deepEqual([session.tokenType, session.dpopKey], ["Bearer", null]);
    const [signedIn] = fetch.tokenRequests("signed_challenge");
    assert.equal(signedIn.headers.get("dpop"), null);
    assert.equal(signedIn.answer.refresh_token, undefined);
    assert.equal(decodeJwt(signedIn.answer.access_token).cnf, undefined);
    const revoked = session.accessToken;
    assert.equal((await post("/v1/revoke", { token: revoked })).status, 200);
    const response = await session.fetch(...releaseRequest(key.secretKey));
    assert.equal(response.status, 200);
    assert.equal((await response.json()).sub, session.account);
    assert.notEqual(session.accessToken, revoked);
    assert.equal(fetch.tokenRequests("signed_challenge").length, 2);
  },
);

test("a 401 that outlives the renewal is thrown as keyproof's error", { skip }, async () => {
  const key = KEYS.ed25519();
  const fetch = recordingFetch();
  const session = await signInWithKey({
    issuer: KEYPROOF_URL,
    key,
    scope: "escrow:release",
    fetch,
    dpop: false,
  });
  const foreign = releaseRequest(key.secretKey, "https://escrow.example");
  await assert.rejects(session.fetch(...foreign), (error) => {
    assert.ok(error instanceof KeyproofError);
    assert.deepEqual(
      [error.status, error.error, error.reason],
      [401, "invalid_token", "token_invalid"],
    );
    return true;
  });
  assert.equal(fetch.tokenRequests("signed_challenge").length, 2);
});

test("keyproof's refusals and an unreachable issuer are typed errors", { skip }, async () => {
  const key = KEYS.ed25519();
  await assert.rejects(signInWithKey({ issuer: KEYPROOF_URL, key, scope: "admin:all" }), {
    name: "KeyproofError",
    status: 400,
    error: "invalid_scope",
    reason: "unknown_scope",
  });
  await assert.rejects(signInWithKey({ issuer: "http://127.0.0.1:9", key }), {
    status: 0,
    reason: "unreachable",
  });
  // RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
  const aliased = KEYPROOF_URL.replace("127.0.0.1", "localhost");
  await assert.rejects(discover(aliased), { status: 0, reason: "unexpected_response" });
});

test("a signature that does not verify is keyproof's signature_invalid", { skip }, async () => {
  const key = KEYS.ed25519();
  const other = KEYS.ed25519();
  const liar = {
    account: async () => accountOf(key),
    sign: async (challenge) => ({
      message: challenge.message,
      signature: base64urlnopad.encode(
        ed25519.sign(new TextEncoder().encode(challenge.message), other.secretKey),
      ),
    }),
  };
  await assert.rejects(signIn({ issuer: KEYPROOF_URL, signer: liar }), {
    status: 401,
    error: "invalid_grant",
    reason: "signature_invalid",
  });
});
