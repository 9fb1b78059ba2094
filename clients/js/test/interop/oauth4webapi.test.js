// A generic OAuth client nobody here wrote, oauth4webapi, against keyproof with DPoP
// nonces: discovery, its DPoP() handle (ES256 and Ed25519 keys), the signed-challenge
// grant as an RFC 6749 form (genericTokenEndpointRequest), refreshTokenGrantRequest, and
// protectedResourceRequest at a keyproof.guard resource server. jose verifies the tokens.
import assert from "node:assert/strict";
import { test } from "node:test";

import { calculateJwkThumbprint, createRemoteJWKSet, exportJWK, jwtVerify } from "jose";
import * as oauth from "oauth4webapi";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

import { RESOURCE_URL, SESSIONS_URL, challenge, skipSessions as skip } from "./server.js";

const GRANT = "urn:keyproof:grant-type:signed-challenge";
// Plain http is for 127.0.0.1 only: the test servers.
const insecure = { [oauth.allowInsecureRequests]: true };
const client = { client_id: "oauth4webapi-interop" };

async function authorizationServer() {
  const issuer = new URL(SESSIONS_URL);
  const response = await oauth.discoveryRequest(issuer, { algorithm: "oauth2", ...insecure });
  return oauth.processDiscoveryResponse(issuer, response);
}

/** Once more after a `use_dpop_nonce` refusal: the handle keeps the nonce it was given. */
async function withNonce(attempt) {
  try {
    return await attempt();
  } catch (error) {
    if (!oauth.isDPoPNonceError(error)) throw error;
    withNonce.retries += 1;
    return attempt();
  }
}
withNonce.retries = 0;

async function verified(accessToken) {
  const jwks = createRemoteJWKSet(new URL(`${SESSIONS_URL}/.well-known/jwks.json`));
  return jwtVerify(accessToken, jwks, {
    issuer: SESSIONS_URL,
    audience: SESSIONS_URL,
    typ: "at+jwt",
    algorithms: ["Ed25519"],
  });
}

async function profile(accessToken, DPoP) {
  const url = new URL(`${RESOURCE_URL}/profile`);
  const options = DPoP ? { DPoP, ...insecure } : insecure;
  return oauth.protectedResourceRequest(accessToken, "GET", url, undefined, undefined, options);
}

for (const alg of ["ES256", "Ed25519"]) {
  test(
    `oauth4webapi signs in with a ${alg} DPoP key, refreshes and calls the guard`,
    { skip },
    async () => {
      const as = await authorizationServer();
      assert.ok(as.dpop_signing_alg_values_supported.includes(alg));
      assert.ok(as.grant_types_supported.includes(GRANT));
      const keyPair = await oauth.generateKeyPair(alg);
      const DPoP = oauth.DPoP(client, keyPair);
      const jkt = await DPoP.calculateThumbprint();
      assert.equal(jkt, await calculateJwkThumbprint(await exportJWK(keyPair.publicKey)));

      const wallet = privateKeyToAccount(generatePrivateKey());
      const issued = await challenge(
        `eip155:1:${wallet.address}`,
        "profile:read",
        { dpop_jkt: jkt },
        SESSIONS_URL,
      );
      const parameters = {
        message: issued.message,
        signature: await wallet.signMessage({ message: issued.message }),
      };
      const options = { DPoP, ...insecure };
      withNonce.retries = 0;
      const signedIn = await withNonce(async () =>
        oauth.processGenericTokenEndpointResponse(
          as,
          client,
          await oauth.genericTokenEndpointRequest(
            as,
            client,
            oauth.None(),
            GRANT,
            parameters,
            options,
          ),
        ),
      );
      assert.equal(signedIn.token_type, "dpop");
      assert.equal(withNonce.retries, 1, "a new DPoP key is asked to use the server's nonce");
      const { payload, protectedHeader } = await verified(signedIn.access_token);
      assert.equal(protectedHeader.alg, "Ed25519");
      assert.deepEqual(payload.cnf, { jkt });
      assert.equal(payload.sub, `eip155:1:${wallet.address}`);

      const first = await (await profile(signedIn.access_token, DPoP)).json();
      assert.deepEqual(
        [first.sub, first.token_type, first.jkt, first.jti],
        [payload.sub, "DPoP", jkt, payload.jti],
      );
      const refresh = async (token) =>
        oauth.processRefreshTokenResponse(
          as,
          client,
          await oauth.refreshTokenGrantRequest(as, client, oauth.None(), token, options),
        );
      const refreshed = await withNonce(() => refresh(signedIn.refresh_token));
      assert.notEqual(refreshed.refresh_token, signedIn.refresh_token);
      assert.equal(withNonce.retries, 1, "the handle kept the nonce of the last answer");
      assert.equal(refreshed.token_type, "dpop");
      const seen = await (await profile(refreshed.access_token, DPoP)).json();
      assert.deepEqual(
        [seen.sub, seen.token_type, seen.jkt, seen.jti === payload.jti],
        [payload.sub, "DPoP", jkt, false],
      );

      // The same token without its proof: the guard refuses it, as a Bearer token too.
      await assert.rejects(profile(refreshed.access_token), (error) => {
        assert.ok(error instanceof oauth.WWWAuthenticateChallengeError);
        assert.deepEqual(
          [error.response.status, error.cause[0].scheme, error.cause[0].parameters.error],
          [401, "bearer", "invalid_token"],
        );
        return true;
      });
      // The used refresh token is refused, and the session ends.
      for (const [token, reason] of [
        [signedIn.refresh_token, "refresh_token_reused"],
        [refreshed.refresh_token, "session_revoked"],
      ]) {
        await assert.rejects(
          withNonce(() => refresh(token)),
          (error) => {
            assert.ok(error instanceof oauth.ResponseBodyError);
            assert.deepEqual(
              [error.status, error.error, error.cause.reason],
              [400, "invalid_grant", reason],
            );
            return true;
          },
        );
      }
    },
  );
}
