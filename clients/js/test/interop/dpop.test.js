// keyproof-client's DPoP session against keyproof with server nonces and 10 s tokens, and
// against a keyproof.guard resource server (tests/resource_server.py): the proofs carry
// what RFC 9449 asks, nonces are fetched once and kept, a revoked token is refreshed
// without the wallet, a revoked session signs in again, concurrent callers share one
// refresh.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { test } from "node:test";

import { EmbeddedJWK, calculateJwkThumbprint, exportJWK, jwtVerify } from "jose";

import { signIn } from "keyproof-client";

import { countingSigner, proofClaims, recordingFetch } from "./recorder.js";
import { RESOURCE_URL, SESSIONS_URL, post, skipSessions as skip } from "./server.js";

const ed25519Key = () => ({ type: "ed25519", secretKey: randomBytes(32) });

async function start(options = {}) {
  const fetch = recordingFetch();
  const signer = countingSigner(ed25519Key());
  const session = await signIn({
    issuer: SESSIONS_URL,
    signer,
    fetch,
    scope: "profile:read",
    ...options,
  });
  return { session, fetch, signer };
}

const resourceCalls = (fetch) => fetch.exchanges.filter((e) => e.url.startsWith(RESOURCE_URL));

test(
  "the first token request is asked for a nonce and sent once more with it; later ones carry the latest",
  { skip },
  async () => {
    const { session, fetch, signer } = await start();
    const [first, second] = fetch.tokenRequests("signed_challenge");
    assert.deepEqual([first.status, first.answer.error], [400, "use_dpop_nonce"]);
    assert.equal(proofClaims(first).nonce, undefined);
    assert.equal(proofClaims(second).nonce, first.responseHeaders.get("dpop-nonce"));
    assert.deepEqual([second.status, second.answer.token_type], [200, "DPoP"]);
    assert.equal(second.body, first.body, "the signed message was not used up by the refusal");
    assert.equal(signer.signatures, 1);
    await session.renew();
    const [refresh, ...more] = fetch.tokenRequests("refresh_token");
    assert.deepEqual(more, []);
    assert.equal(refresh.status, 200);
    assert.equal(proofClaims(refresh).nonce, second.responseHeaders.get("dpop-nonce"));
  },
);

test(
  "a proof for every resource request: method, URL without query, the token's hash, the session's key",
  { skip },
  async () => {
    const { session, fetch } = await start();
    const response = await session.fetch(`${RESOURCE_URL}/profile?page=2#top`);
    const seen = await response.json();
    const [call] = resourceCalls(fetch);
    const token = call.headers.get("authorization").replace(/^DPoP /, "");
    assert.equal(token, session.accessToken);
    const { payload, protectedHeader } = await jwtVerify(call.headers.get("dpop"), EmbeddedJWK, {
      typ: "dpop+jwt",
      algorithms: ["ES256"],
    });
    assert.equal(protectedHeader.jwk.d, undefined);
    assert.equal(payload.htm, "GET");
    assert.equal(payload.htu, `${RESOURCE_URL}/profile`);
    assert.equal(payload.ath, createHash("sha256").update(token).digest("base64url"));
    assert.ok(Math.abs(payload.iat - Date.now() / 1000) < 5);
    const jkt = await calculateJwkThumbprint(protectedHeader.jwk);
    assert.deepEqual(seen, { ...seen, sub: session.account, token_type: "DPoP", jkt });
    assert.equal(jkt, await calculateJwkThumbprint(await exportJWK(session.dpopKey.publicKey)));
  },
);

test("a resource server's nonce is used, and kept for its next requests", { skip }, async () => {
  const { session, fetch } = await start();
  for (const _ of [1, 2]) {
    const response = await session.fetch(`${RESOURCE_URL}/nonce/profile`);
    assert.equal((await response.json()).token_type, "DPoP");
  }
  const calls = resourceCalls(fetch);
  assert.deepEqual(
    calls.map((call) => call.status),
    [401, 200, 200],
  );
  const nonce = calls[0].responseHeaders.get("dpop-nonce");
  assert.deepEqual(
    calls.map((call) => proofClaims(call).nonce),
    [undefined, nonce, nonce],
  );
});

test(
  "a revoked access token: the resource answers 401, the session refreshes (no wallet) and retries",
  { skip },
  async () => {
    const { session, fetch, signer } = await start({ scope: "escrow:release" });
    const revoked = session.accessToken;
    assert.equal((await post("/v1/revoke", { token: revoked }, SESSIONS_URL)).status, 200);
    const response = await session.fetch(`${RESOURCE_URL}/escrow`);
    assert.equal((await response.json()).sub, session.account);
    assert.deepEqual(
      resourceCalls(fetch).map((call) => call.status),
      [401, 200],
    );
    assert.notEqual(session.accessToken, revoked);
    assert.equal(fetch.tokenRequests("refresh_token").length, 1);
    assert.equal(signer.signatures, 1);
  },
);

test(
  "a session revoked elsewhere: the resource answers 401, the session signs in again and retries",
  { skip },
  async () => {
    const { session, fetch, signer } = await start({ scope: "escrow:release" });
    const [refreshToken] = fetch.exchanges.map((e) => e.answer?.refresh_token).filter(Boolean);
    assert.equal((await post("/v1/revoke", { token: refreshToken }, SESSIONS_URL)).status, 200);
    const response = await session.fetch(`${RESOURCE_URL}/escrow`);
    assert.equal((await response.json()).token_type, "DPoP");
    const [refresh] = fetch.tokenRequests("refresh_token");
    assert.equal(refresh.answer.reason, "refresh_token_invalid");
    assert.equal(signer.signatures, 2);
  },
);

test(
  "concurrent requests near expiry share one refresh, so the session survives",
  { skip },
  async () => {
    let clock = Date.now() / 1000;
    const { session, fetch, signer } = await start({ now: () => clock });
    clock = session.expiresAt - 1;
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => session.fetch(`${RESOURCE_URL}/profile`)),
    );
    assert.deepEqual(
      answers.map((answer) => answer.status),
      Array(8).fill(200),
    );
    assert.equal(fetch.tokenRequests("refresh_token").length, 1);
    clock = session.expiresAt - 1;
    await session.renew();
    assert.deepEqual(
      fetch.tokenRequests("refresh_token").map((e) => e.status),
      [200, 200],
    );
    assert.equal(signer.signatures, 1);
  },
);

test(
  "escrow:release is DPoP-only there: a bearer session (dpop: false) is refused",
  { skip },
  async () => {
    await assert.rejects(start({ dpop: false, scope: "escrow:release" }), {
      status: 400,
      error: "invalid_dpop_proof",
    });
  },
);
