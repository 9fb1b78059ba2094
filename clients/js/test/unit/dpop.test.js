// The client's DPoP key and proofs, checked by jose (RFC 9449 §4.2, RFC 7638), and the
// nonce bookkeeping (§8, §9) on real Response objects.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

import { EmbeddedJWK, calculateJwkThumbprint, jwtVerify } from "jose";

import { DPoPKey, DPoPNonces } from "../../src/dpop.js";

const verify = (proof) =>
  jwtVerify(proof, EmbeddedJWK, { typ: "dpop+jwt", algorithms: ["ES256"], maxTokenAge: 5 });

test("a proof is an ES256 dpop+jwt over the public key, for the URL without query", async () => {
  const key = await DPoPKey.generate();
  const proof = await key.proof({ method: "POST", url: "https://rs.example:8443/a/b?c=d#e" });
  const { payload, protectedHeader } = await verify(proof);
  assert.deepEqual(Object.keys(protectedHeader.jwk).sort(), ["crv", "kty", "x", "y"]);
  assert.deepEqual([protectedHeader.alg, protectedHeader.jwk.crv], ["ES256", "P-256"]);
  assert.deepEqual(Object.keys(payload).sort(), ["htm", "htu", "iat", "jti"]);
  assert.deepEqual([payload.htm, payload.htu], ["POST", "https://rs.example:8443/a/b"]);
  assert.match(payload.jti, /^[\w-]{22}$/);
  assert.equal(key.thumbprint, await calculateJwkThumbprint(protectedHeader.jwk));
});

test("with a token the proof carries its hash (ath); with a nonce, the nonce", async () => {
  const key = await DPoPKey.generate();
  const accessToken = "eyJhbGciOiJFZDI1NTE5In0.e30.c2ln";
  const proofs = await Promise.all(
    [1, 2].map(() =>
      key.proof({ method: "GET", url: "http://127.0.0.1/x", accessToken, nonce: "n-1" }),
    ),
  );
  const [a, b] = await Promise.all(proofs.map(async (proof) => (await verify(proof)).payload));
  assert.equal(a.ath, createHash("sha256").update(accessToken).digest("base64url"));
  assert.equal(a.nonce, "n-1");
  assert.notEqual(a.jti, b.jti);
});

test("the private key cannot be exported, in any format", async () => {
  const { privateKey, publicKey } = (await DPoPKey.generate()).keyPair;
  assert.equal(privateKey.extractable, false);
  assert.deepEqual(privateKey.usages, ["sign"]);
  for (const format of ["jwk", "pkcs8"]) {
    // WebCrypto's InvalidAccessError, which Node 20 spells InvalidAccessException.
    await assert.rejects(crypto.subtle.exportKey(format, privateKey), {
      name: /^InvalidAccess(Error|Exception)$/,
    });
  }
  assert.equal((await crypto.subtle.exportKey("jwk", publicKey)).d, undefined);
});

function answer(status, { nonce, body, challenge } = {}) {
  const headers = new Headers();
  if (nonce) headers.set("DPoP-Nonce", nonce);
  if (challenge) headers.set("WWW-Authenticate", challenge);
  return new Response(body ? JSON.stringify(body) : null, { status, headers });
}

test("a use_dpop_nonce refusal with a new nonce asks for the request again", async () => {
  const nonces = new DPoPNonces();
  const token = "https://as.example/v1/token";
  assert.equal(nonces.get(token), null);
  assert.equal(
    await nonces.remember(token, answer(400, { nonce: "n1", body: { error: "use_dpop_nonce" } })),
    true,
  );
  assert.equal(nonces.get(token), "n1");
  // The same nonce again: asking once more would not help.
  assert.equal(
    await nonces.remember(token, answer(400, { nonce: "n1", body: { error: "use_dpop_nonce" } })),
    false,
  );
  const resource = "https://rs.example/profile";
  const challenge = 'DPoP error="use_dpop_nonce", error_description="fresh nonce"';
  assert.equal(await nonces.remember(resource, answer(401, { nonce: "r1", challenge })), true);
  assert.deepEqual([nonces.get(token), nonces.get("https://rs.example/other")], ["n1", "r1"]);
});

test("nonces on other answers are kept without a repeat; answers without one change nothing", async () => {
  const nonces = new DPoPNonces();
  const url = "https://as.example/v1/token";
  assert.equal(await nonces.remember(url, answer(200, { nonce: "n2" })), false);
  assert.equal(
    await nonces.remember(url, answer(400, { body: { error: "use_dpop_nonce" } })),
    false,
  );
  assert.equal(
    await nonces.remember(url, answer(400, { nonce: "n3", body: { error: "invalid_grant" } })),
    false,
  );
  const bearer = 'Bearer error="invalid_token"';
  assert.equal(await nonces.remember(url, answer(401, { nonce: "n4", challenge: bearer })), false);
  assert.equal(nonces.get(url), "n4");
});
