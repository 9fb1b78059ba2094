// examples/web in Debian's Chromium: served from another origin than keyproof, signed
// in by test wallets, the token checked against the JWKS; then one signature keeps a
// DPoP session at a guarded resource server across several token lifetimes. Needs the
// servers that tests/test_clients_js.py starts: KEYPROOF_URL (10 s tokens, DPoP nonces),
// RESOURCE_URL (tests/resource_server.py), PAGE_URL, FOREIGN_PAGE_URL.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { calculateJwkThumbprint, createRemoteJWKSet, decodeJwt, jwtVerify } from "jose";
import { chromium } from "playwright-core";

import { createWallets, installWallets } from "./wallets.js";

const { KEYPROOF_URL, RESOURCE_URL, PAGE_URL, FOREIGN_PAGE_URL, ARTIFACTS } = process.env;
const skip =
  KEYPROOF_URL && RESOURCE_URL && PAGE_URL
    ? false
    : "needs the servers of tests/test_clients_js.py";
const README = new URL("../../../../README.md", import.meta.url);
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
let browser;

before(async () => {
  if (skip) return;
  browser = await chromium.launchPersistentContext(process.env.USER_DATA_DIR, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_FLAGS,
  });
});

after(async () => browser?.close());

/** A fresh page with fresh wallets; returns the page, the wallets and the tokens it got. */
async function openPage(url, { withSignIn = true } = {}) {
  const wallets = createWallets();
  const context = browser;
  const page = await context.newPage();
  await wallets.expose(page);
  await page.addInitScript(installWallets, {
    solanaAddress: wallets.solanaAddress,
    solanaPublicKey: Array.from(wallets.solanaPublicKey),
    withSignIn,
  });
  const answers = [];
  page.on("response", (response) => {
    if (response.url() === `${KEYPROOF_URL}/v1/token` && response.ok())
      answers.push(response.json());
  });
  const tokens = async () => (await Promise.all(answers)).map((answer) => answer.access_token);
  const challenged = [];
  const redeemed = [];
  page.on("response", (response) => {
    if (response.url() === `${KEYPROOF_URL}/v1/challenge`) challenged.push(response.json());
  });
  page.on("request", (request) => {
    if (request.url() === `${KEYPROOF_URL}/v1/token`) redeemed.push(request.postDataJSON().message);
  });
  const messages = async () => ({
    challenged: (await Promise.all(challenged)).map((c) => c.message),
    // The first DPoP proof has no nonce yet: the same message is sent once more with one.
    redeemed: [...new Set(redeemed)],
  });
  page.on("pageerror", (error) => console.error("page error:", error.message));
  await page.goto(
    `${url}/examples/web/?issuer=${encodeURIComponent(KEYPROOF_URL)}&scope=profile:read`,
  );
  return { page, wallets, tokens, messages };
}

async function verified(token, account) {
  const jwks = createRemoteJWKSet(new URL(`${KEYPROOF_URL}/.well-known/jwks.json`));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer: KEYPROOF_URL,
    audience: KEYPROOF_URL,
    typ: "at+jwt",
    algorithms: ["Ed25519"],
  });
  assert.equal(protectedHeader.typ, "at+jwt");
  assert.equal(payload.sub, account);
  return payload;
}

async function signsIn(t, button, { withSignIn, expected }) {
  const { page, wallets, tokens, messages } = await openPage(PAGE_URL, { withSignIn });
  await page.click(button);
  await page.locator("#session").waitFor({ state: "visible", timeout: 20_000 });
  const account = expected(wallets);
  assert.equal(await page.textContent("#account"), account);
  assert.equal(await page.textContent("#scopes"), "profile:read");
  assert.ok(Date.parse(await page.textContent("#expires")) > Date.now());
  assert.equal(await page.textContent("#token-type"), "DPoP");
  await page.screenshot({ path: join(ARTIFACTS, `${t.name.replaceAll(/\W+/g, "-")}.png`) });
  const [token, ...more] = await tokens();
  assert.deepEqual(more, []);
  const claims = await verified(token, account);
  assert.equal(typeof claims.cnf.jkt, "string");
  // The relying party's domain, and (through solana:signIn too) the challenge's exact text.
  const { challenged, redeemed } = await messages();
  assert.ok(challenged[0].startsWith(`${new URL(PAGE_URL).host} wants you to sign in`));
  assert.deepEqual(redeemed, challenged);
  assert.equal(claims.scope, "profile:read");
  await page.close();
}

test("Sign in with Ethereum: the page shows the account and scopes", { skip }, (t) =>
  signsIn(t, "#ethereum", { expected: (w) => `eip155:1:${w.ethereumAddress}` }),
);

test("Sign in with Solana through the wallet's solana:signIn", { skip }, (t) =>
  signsIn(t, "#solana", {
    withSignIn: true,
    expected: (w) => `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:${w.solanaAddress}`,
  }),
);

test("Sign in with Solana through solana:signMessage", { skip }, (t) =>
  signsIn(t, "#solana", {
    withSignIn: false,
    expected: (w) => `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:${w.solanaAddress}`,
  }),
);

test("the page from an origin keyproof does not list shows an error", { skip }, async (t) => {
  const { page, tokens } = await openPage(FOREIGN_PAGE_URL);
  await page.click("#ethereum");
  const error = page.locator("#error");
  await error.waitFor({ state: "visible", timeout: 20_000 });
  assert.match(await error.textContent(), /Sign-in failed: unreachable: no answer from/);
  assert.equal(await page.locator("#session").isVisible(), false);
  assert.deepEqual(await tokens(), []);
  await page.screenshot({ path: join(ARTIFACTS, "unlisted-origin.png") });
  await page.close();
});

test("the README's browser snippet runs as written", { skip }, async () => {
  const blocks = [...readFileSync(README, "utf8").matchAll(/^```js\n(.*?)^```$/gms)].map(
    (m) => m[1],
  );
  assert.equal(blocks.length, 1, "README.md has one js block");
  const { page, wallets, tokens } = await openPage(PAGE_URL);
  const printed = new Promise((resolve, reject) => {
    const lines = [];
    page.on("console", (message) => {
      if (message.type() === "log" && lines.push(message.text()) === 2) resolve(lines);
    });
    page.on("pageerror", reject);
    setTimeout(() => reject(new Error(`the snippet printed only ${lines}`)), 20_000);
  });
  await page.evaluate(
    ([issuer, api]) => Object.assign(window, { KEYPROOF_URL: issuer, API_URL: api }),
    [KEYPROOF_URL, RESOURCE_URL],
  );
  await page.addScriptTag({ type: "module", content: blocks[0] });
  const lines = await printed;
  assert.deepEqual(lines, [`eip155:1:${wallets.ethereumAddress} DPoP profile:read`, "200"]);
  await verified((await tokens())[0], `eip155:1:${wallets.ethereumAddress}`);
  await page.screenshot({ path: join(ARTIFACTS, "README-snippet.png") });
  await page.close();
});

/**
 * Signs in on the page, then calls the guarded route every second for `lifetimes` token
 * lifetimes, and for `maxSeconds` at most.
 */
function keepSession({ issuer, resource, lifetimes, maxSeconds }) {
  return (async () => {
    const { signInWithEthereum } = await import("keyproof-client");
    const session = await signInWithEthereum({
      issuer,
      provider: window.ethereum,
      scope: "profile:read",
    });
    const started = Date.now();
    const ttl = session.expiresAt - started / 1000;
    const seen = [];
    const seconds = Math.min(lifetimes * ttl + 1, maxSeconds);
    while (Date.now() - started < seconds * 1000) {
      const response = await session.fetch(`${resource}/profile`);
      seen.push(await response.json());
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const { privateKey, publicKey } = session.dpopKey;
    const exported = await crypto.subtle.exportKey("jwk", privateKey).then(
      () => "exported",
      (error) => error.name,
    );
    return {
      seen,
      ttl,
      tokenType: session.tokenType,
      extractable: privateKey.extractable,
      exported,
      publicJwk: await crypto.subtle.exportKey("jwk", publicKey),
    };
  })();
}

test(
  "one wallet signature keeps a DPoP session across several token lifetimes",
  { skip },
  async (t) => {
    const { page, wallets } = await openPage(PAGE_URL);
    const sent = [];
    page.on("request", (request) => {
      const url = request.url();
      if (url.startsWith(RESOURCE_URL) || url === `${KEYPROOF_URL}/v1/token`) sent.push(request);
    });
    const result = await page.evaluate(keepSession, {
      issuer: KEYPROOF_URL,
      resource: RESOURCE_URL,
      lifetimes: 3,
      maxSeconds: 45,
    });
    assert.ok(result.ttl <= 10, `tokens live ${result.ttl} s: 45 s cover fewer than 3`);
    assert.equal(wallets.personalSigns, 1);
    assert.equal(result.tokenType, "DPoP");

    // The guard saw DPoP tokens of the page's key, a new one before each expired.
    const jkt = await calculateJwkThumbprint(result.publicJwk);
    const account = `eip155:1:${wallets.ethereumAddress}`;
    for (const seen of result.seen)
      assert.deepEqual(seen, { ...seen, sub: account, jkt, token_type: "DPoP" });
    const tokens = new Set(result.seen.map((seen) => seen.jti));
    assert.ok(tokens.size >= 4, `${tokens.size} tokens in ${result.seen.length} calls`);

    // What went over the wire: every token request and resource call with its proof.
    const resourceCalls = sent.filter((request) => request.url().startsWith(RESOURCE_URL));
    assert.equal(resourceCalls.length, result.seen.length, "no call was refused and repeated");
    for (const request of resourceCalls) {
      const headers = await request.allHeaders();
      const token = headers.authorization.replace(/^DPoP /, "");
      const proof = decodeJwt(headers.dpop);
      assert.deepEqual(
        [proof.htm, proof.htu, proof.ath],
        ["GET", `${RESOURCE_URL}/profile`, createHash("sha256").update(token).digest("base64url")],
      );
    }
    const answers = await Promise.all(
      sent
        .filter((r) => r.url().endsWith("/v1/token"))
        .map(async (r) => [r, await (await r.response()).json()]),
    );
    for (const [request] of answers) assert.ok((await request.allHeaders()).dpop);
    const granted = answers.filter(([, answer]) => answer.access_token);
    assert.deepEqual(new Set(granted.map(([, answer]) => answer.token_type)), new Set(["DPoP"]));
    const refreshes = granted.filter(([request]) =>
      request.postData().startsWith("grant_type=refresh_token"),
    );
    assert.equal(granted.length - refreshes.length, 1, "one sign-in in the loop");
    assert.ok(refreshes.length >= 3, `${refreshes.length} refreshes`);
    t.diagnostic(
      `${result.seen.length} calls, ${tokens.size} tokens of ${result.ttl.toFixed(1)} s, ` +
        `${refreshes.length} refreshes, ${answers.length} token requests, 1 signature`,
    );

    // The key that signs the proofs never leaves WebCrypto.
    assert.deepEqual([result.extractable, result.exported], [false, "InvalidAccessError"]);
    await page.close();
  },
);
