// Local keys sign exactly as the worked examples of specs/protocol.md, whose keys are
// published test keys, and produce the shared vectors' valid signatures byte for byte.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { accountOf, keySigner } from "keyproof-client/keys";

const vectors = JSON.parse(
  readFileSync(new URL("../../../../specs/vectors/sign_in_families.json", import.meta.url), "utf8"),
);
const hex = (text) => Uint8Array.from(text.match(/../g), (pair) => Number.parseInt(pair, 16));

const EXAMPLES = [
  // specs/protocol.md §3 "Worked example: Ethereum" (eth-account's documented key)
  [
    "eip155-valid",
    {
      type: "ethereum",
      secretKey: hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"),
    },
  ],
  // "Worked example: Solana" (RFC 8032 §7.1 test 1)
  [
    "solana-valid",
    {
      type: "solana",
      secretKey: hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
      cluster: "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
    },
  ],
  // "Worked example: did:key ed25519" (RFC 8032 §7.1 test 2)
  [
    "did-key-ed25519-valid",
    {
      type: "ed25519",
      secretKey: hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
    },
  ],
  // "Worked example: did:key secp256k1" (RFC 6979 nonces, low S)
  [
    "did-key-secp256k1-valid",
    {
      type: "secp256k1",
      secretKey: hex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"),
    },
  ],
];

for (const [name, key] of EXAMPLES) {
  test(`${key.type} key signs the ${name} vector`, async () => {
    const vector = vectors.cases.find((c) => c.name === name);
    assert.equal(accountOf(key), vector.account);
    const signer = keySigner(key);
    assert.equal(await signer.account(), vector.account);
    const signed = await signer.sign({ message: vector.message });
    assert.deepEqual(signed, { message: vector.message, signature: vector.signature });
  });
}

test("a Solana 64-byte secret key (seed and public key) is accepted", () => {
  const seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  const publicKey = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const full = Uint8Array.of(...seed, ...publicKey);
  assert.equal(
    accountOf({ type: "solana", secretKey: full }),
    accountOf({ type: "solana", secretKey: seed }),
  );
  full[40] ^= 1;
  assert.throws(() => accountOf({ type: "solana", secretKey: full }), /public half/);
});

test("wrong keys are refused before any request", () => {
  assert.throws(
    () => accountOf({ type: "rsa", secretKey: new Uint8Array(32) }),
    /key.type must be one of/,
  );
  assert.throws(
    () => accountOf({ type: "ed25519", secretKey: new Uint8Array(31) }),
    /32 \(or 64\) bytes/,
  );
  assert.throws(() => accountOf({ type: "secp256k1", secretKey: new Uint8Array(32) }), /1..n-1/);
  assert.throws(() => accountOf({ type: "ethereum", secretKey: "0x01" }), /Uint8Array/);
});
