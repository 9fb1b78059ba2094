// Challenges signed by other libraries' signers are redeemed; a one-character change to
// the signature is refused as signature_invalid and leaves the challenge redeemable.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ed25519 } from "@noble/curves/ed25519.js";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { base58, base64urlnopad } from "@scure/base";
import { Keypair } from "@solana/web3.js";
import { Wallet } from "ethers";
import nacl from "tweetnacl";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

import { SOLANA_MAINNET, challenge, redeem, skip, tamper } from "./server.js";

const HEX = "0123456789abcdef";
const BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const bytes = (text) => new TextEncoder().encode(text);

const SIGNERS = {
  "ethers v6 Wallet.signMessage": async () => {
    const wallet = Wallet.createRandom();
    return {
      account: `eip155:1:${wallet.address}`,
      sign: (m) => wallet.signMessage(m),
      alphabet: HEX,
    };
  },
  "viem signMessage": async () => {
    const account = privateKeyToAccount(generatePrivateKey());
    return {
      account: `eip155:1:${account.address}`,
      sign: (m) => account.signMessage({ message: m }),
      alphabet: HEX,
    };
  },
  "@solana/web3.js Keypair with tweetnacl sign.detached": async () => {
    const keypair = Keypair.generate();
    const sign = (m) => base58.encode(nacl.sign.detached(bytes(m), keypair.secretKey));
    return { account: `${SOLANA_MAINNET}:${keypair.publicKey.toBase58()}`, sign, alphabet: BASE58 };
  },
  "@noble/curves ed25519 did:key": async () => {
    const { secretKey, publicKey } = ed25519.keygen();
    const did = "did:key:z" + base58.encode(Uint8Array.of(0xed, 0x01, ...publicKey));
    const sign = (m) => base64urlnopad.encode(ed25519.sign(bytes(m), secretKey));
    return { account: did, sign, alphabet: BASE64URL };
  },
  "@noble/curves secp256k1 did:key": async () => {
    const { secretKey, publicKey } = secp256k1.keygen();
    const did = "did:key:z" + base58.encode(Uint8Array.of(0xe7, 0x01, ...publicKey));
    const sign = (m) => base64urlnopad.encode(secp256k1.sign(bytes(m), secretKey));
    return { account: did, sign, alphabet: BASE64URL };
  },
};

for (const [name, create] of Object.entries(SIGNERS)) {
  test(
    `a challenge signed by ${name} is redeemed; a tampered signature is not`,
    { skip },
    async () => {
      const { account, sign, alphabet } = await create();
      const issued = await challenge(account, "profile:read");
      const signature = await sign(issued.message);
      const forged = tamper(signature, 20, alphabet);
      const refused = await redeem(issued.message, forged);
      assert.equal(refused.status, 401);
      assert.equal(refused.body.reason, "signature_invalid");
      const accepted = await redeem(issued.message, signature);
      assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
      assert.equal(accepted.body.scope, "profile:read");
    },
  );
}
