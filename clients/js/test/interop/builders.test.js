// For the same fields, keyproof's challenge text is byte for byte what other libraries
// build: the `siwe` package, viem (which writes times as `.000Z`: that spelling is
// redeemed too) and the Wallet Standard's Sign In With Solana text.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createSignInMessageText, parseSignInMessageText } from "@solana/wallet-standard-util";
import { base58 } from "@scure/base";
import { Wallet } from "ethers";
import { SiweMessage } from "siwe";
import nacl from "tweetnacl";
import { createSiweMessage } from "viem/siwe";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

import { signInInput } from "keyproof-client";

import { SOLANA_MAINNET, challenge, redeem, skip } from "./server.js";

const SCOPE = "profile:read";

/** The fields of an ERC-4361-style text, read line by line. */
function fields(text) {
  const lines = text.split("\n");
  const labelled = Object.fromEntries(
    lines.filter((line) => /^[A-Z][A-Za-z ]+: /.test(line)).map((line) => line.split(": ")),
  );
  const resources = lines.slice(lines.indexOf("Resources:") + 1).map((line) => line.slice(2));
  return {
    domain: lines[0].split(" ")[0],
    address: lines[1],
    statement: lines[3],
    uri: labelled.URI,
    version: labelled.Version,
    chainId: labelled["Chain ID"],
    nonce: labelled.Nonce,
    issuedAt: labelled["Issued At"],
    expirationTime: labelled["Expiration Time"],
    resources,
  };
}

test("the siwe package's prepareMessage() writes keyproof's text", { skip }, async () => {
  const wallet = Wallet.createRandom();
  const issued = await challenge(`eip155:1:${wallet.address}`, SCOPE);
  const f = fields(issued.message);
  const built = new SiweMessage({ ...f, chainId: Number(f.chainId) }).prepareMessage();
  assert.equal(built, issued.message);
  const { status } = await redeem(built, await wallet.signMessage(built));
  assert.equal(status, 200);
});

test("viem's createSiweMessage writes keyproof's text, times spelt .000Z", { skip }, async () => {
  const account = privateKeyToAccount(generatePrivateKey());
  const issued = await challenge(`eip155:1:${account.address}`, SCOPE);
  const f = fields(issued.message);
  const built = createSiweMessage({
    ...f,
    chainId: Number(f.chainId),
    issuedAt: new Date(f.issuedAt),
    expirationTime: new Date(f.expirationTime),
  });
  assert.notEqual(built, issued.message);
  assert.equal(built.replaceAll(".000Z", "Z"), issued.message);
  // Both spellings of the same instant are redeemed (each with a fresh challenge).
  const viem = await redeem(built, await account.signMessage({ message: built }));
  assert.equal(viem.status, 200, JSON.stringify(viem.body));
  const again = await challenge(`eip155:1:${account.address}`, SCOPE);
  const plain = await redeem(again.message, await account.signMessage({ message: again.message }));
  assert.equal(plain.status, 200, JSON.stringify(plain.body));
});

test("the Wallet Standard's createSignInMessageText writes keyproof's text", { skip }, async () => {
  const keys = nacl.sign.keyPair();
  const issued = await challenge(`${SOLANA_MAINNET}:${base58.encode(keys.publicKey)}`, SCOPE);
  const f = fields(issued.message);
  delete f.domain; // the first line's word, checked through the whole text below
  const input = { ...f, domain: issued.message.split(" ")[0] };
  assert.equal(createSignInMessageText(input), issued.message);
  // keyproof-client hands a solana:signIn wallet the same fields as the library reads.
  const defined = (input) => JSON.parse(JSON.stringify(input));
  assert.deepEqual(signInInput(issued.message), defined(parseSignInMessageText(issued.message)));
  assert.equal(createSignInMessageText(signInInput(issued.message)), issued.message);
  const signature = base58.encode(
    nacl.sign.detached(new TextEncoder().encode(issued.message), keys.secretKey),
  );
  assert.equal((await redeem(issued.message, signature)).status, 200);
});
