// keyproof-client against a real keyproof: every key type signs in, the token verifies
// with jose, the session renews before expiry and once on a 401, and keyproof's
// refusals arrive as KeyproofError.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";

import { ed25519 } from "@noble/curves/ed25519.js";
import { base64urlnopad } from "@scure/base";
import { createRemoteJWKSet, jwtVerify } from "jose";

import { KeyproofError, discover, signIn } from "keyproof-client";
import { accountOf, signInWithKey } from "keyproof-client/keys";

import { KEYPROOF_URL, post, skip } from "./server.js";

const KEYS = {
  ed25519: () => ({ type: "ed25519", secretKey: randomBytes(32) }),
  secp256k1: () => ({ type: "secp256k1", secretKey: randomBytes(32) }),
  ethereum: () => ({ type: "ethereum", secretKey: randomBytes(32) }),
  solana: () => ({ type: "solana", secretKey: randomBytes(32) }),
};

/** fetch, counting the token requests it carries (each one a fresh signature). */
function countingFetch() {
  const counter = (input, init) => {
    if (String(input instanceof Request ? input.url : input).endsWith("/v1/token"))
      counter.signIns += 1;
    return fetch(input, init);
  };
  counter.signIns = 0;
  return counter;
}

for (const [type, create] of Object.entries(KEYS)) {
  test(
    `a ${type} key signs in and jose verifies the token against the JWKS`,
    { skip },
    async () => {
      const key = create();
      const session = await signInWithKey({ issuer: KEYPROOF_URL, key, scope: "profile:read" });
      const jwks = createRemoteJWKSet(new URL(`${KEYPROOF_URL}/.well-known/jwks.json`));
      const { payload } = await jwtVerify(session.accessToken, jwks, {
        issuer: KEYPROOF_URL,
        audience: KEYPROOF_URL,
        typ: "at+jwt",
        algorithms: ["EdDSA", "Ed25519"],
      });
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
  "the token is renewed shortly before it expires, once for concurrent callers",
  { skip },
  async () => {
    let clock = 1_900_000_000;
    const fetch = countingFetch();
    const session = await signInWithKey({
      issuer: KEYPROOF_URL,
      key: KEYS.ed25519(),
      fetch,
      now: () => clock,
    });
    const first = session.accessToken;
    assert.equal(session.expiresAt, clock + 60);
    clock = session.expiresAt - 31;
    assert.equal(await session.token(), first);
    clock = session.expiresAt - 29;
    const [a, b] = await Promise.all([session.token(), session.token()]);
    assert.equal(a, b);
    assert.notEqual(a, first);
    assert.equal(fetch.signIns, 2);
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
  "a revoked token gets a 401: the session signs in again and retries once",
  { skip },
  async () => {
    const key = KEYS.ed25519();
    const fetch = countingFetch();
    const session = await signInWithKey({
      issuer: KEYPROOF_URL,
      key,
      scope: "escrow:release",
      fetch,
    });
    const revoked = session.accessToken;
    assert.equal((await post("/v1/revoke", { token: revoked })).status, 200);
    const response = await session.fetch(...releaseRequest(key.secretKey));
    assert.equal(response.status, 200);
    assert.equal((await response.json()).sub, session.account);
    assert.notEqual(session.accessToken, revoked);
    assert.equal(fetch.signIns, 2);
  },
);

test("a 401 that outlives the renewal is thrown as keyproof's error", { skip }, async () => {
  const key = KEYS.ed25519();
  const fetch = countingFetch();
  const session = await signInWithKey({
    issuer: KEYPROOF_URL,
    key,
    scope: "escrow:release",
    fetch,
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
  assert.equal(fetch.signIns, 2);
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
