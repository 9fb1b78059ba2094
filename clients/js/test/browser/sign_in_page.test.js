// examples/web in Debian's Chromium: served from another origin than keyproof, signed
// in by test wallets, the token checked against the JWKS. Needs the servers that
// tests/test_clients_js.py starts (KEYPROOF_URL, PAGE_URL, FOREIGN_PAGE_URL).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { createRemoteJWKSet, jwtVerify } from "jose";
import { chromium } from "playwright-core";

import { createWallets, installWallets } from "./wallets.js";

const { KEYPROOF_URL, PAGE_URL, FOREIGN_PAGE_URL, ARTIFACTS } = process.env;
const skip = KEYPROOF_URL && PAGE_URL ? false : "needs the servers of tests/test_clients_js.py";
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
    redeemed,
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
    algorithms: ["EdDSA", "Ed25519"],
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
  await page.screenshot({ path: join(ARTIFACTS, `${t.name.replaceAll(/\W+/g, "-")}.png`) });
  const [token, ...more] = await tokens();
  assert.deepEqual(more, []);
  const claims = await verified(token, account);
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
  const printed = new Promise((resolve) =>
    page.on("console", (message) => message.type() === "log" && resolve(message.text())),
  );
  await page.evaluate((url) => (window.KEYPROOF_URL = url), KEYPROOF_URL);
  await page.addScriptTag({ type: "module", content: blocks[0] });
  const line = await printed;
  assert.match(line, new RegExp(`^eip155:1:${wallets.ethereumAddress} profile:read \\d{4}-`));
  await verified((await tokens())[0], `eip155:1:${wallets.ethereumAddress}`);
  await page.screenshot({ path: join(ARTIFACTS, "README-snippet.png") });
  await page.close();
});
