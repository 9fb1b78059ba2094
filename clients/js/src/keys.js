/**
 * Sign in from Node (or any JS runtime) with a local key, as an agent does: ed25519 and
 * secp256k1 `did:key`s, Ethereum and Solana keys (specs/protocol.md §2 and "Agent
 * keys"). Signatures by @noble/curves: ed25519 per RFC 8032; secp256k1 ECDSA with
 * RFC 6979 nonces and low S, over SHA-256 (did:key) or the EIP-191 digest (Ethereum).
 */

import { ed25519 } from "@noble/curves/ed25519.js";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { base58, base64urlnopad } from "@scure/base";

import { signIn } from "./protocol.js";

export const KEY_TYPES = Object.freeze(["ed25519", "secp256k1", "ethereum", "solana"]);
// Multicodec varints of the public key types (did:key method, base58btc "z" prefix).
const ED25519_PUB = [0xed, 0x01];
const SECP256K1_PUB = [0xe7, 0x01];
const encoder = new TextEncoder();

/**
 * @param {import("./keys.js").SignInWithKeyOptions} options
 */
export function signInWithKey({ key, ...options }) {
  return signIn({ ...options, signer: keySigner(key) });
}

/** A signer for `signIn` holding `key`. */
export function keySigner(key) {
  const { account, sign } = keyFamily(key);
  return {
    account: async () => account,
    sign: async (challenge) => ({
      message: challenge.message,
      signature: sign(encoder.encode(challenge.message)),
    }),
  };
}

/** The account id (token `sub`, as a challenge request spells it) of `key`. */
export function accountOf(key) {
  return keyFamily(key).account;
}

function keyFamily(key) {
  switch (key?.type) {
    case "ed25519": {
      const seed = ed25519Seed(key.secretKey);
      return {
        account: didKey(ED25519_PUB, ed25519.getPublicKey(seed)),
        sign: (bytes) => base64urlnopad.encode(ed25519.sign(bytes, seed)),
      };
    }
    case "secp256k1": {
      const secret = secp256k1Secret(key.secretKey);
      return {
        account: didKey(SECP256K1_PUB, secp256k1.getPublicKey(secret, true)),
        sign: (bytes) => base64urlnopad.encode(secp256k1.sign(bytes, secret)),
      };
    }
    case "ethereum": {
      const secret = secp256k1Secret(key.secretKey);
      return {
        account: `eip155:${key.chainId ?? 1}:${ethereumAddress(secret)}`,
        sign: (bytes) => personalSign(bytes, secret),
      };
    }
    case "solana": {
      const seed = ed25519Seed(key.secretKey);
      return {
        account: `solana:${key.cluster ?? "mainnet"}:${base58.encode(ed25519.getPublicKey(seed))}`,
        sign: (bytes) => base58.encode(ed25519.sign(bytes, seed)),
      };
    }
    default:
      throw new TypeError(`key.type must be one of ${KEY_TYPES.join(", ")}`);
  }
}

function didKey(codec, publicKey) {
  return "did:key:z" + base58.encode(Uint8Array.of(...codec, ...publicKey));
}

/** A 32-byte seed, or NaCl's 64-byte secret key (seed ‖ public key, as Solana keeps it). */
function ed25519Seed(secretKey) {
  const bytes = toBytes(secretKey);
  if (bytes.length === 64) {
    const seed = bytes.slice(0, 32);
    if (!equal(ed25519.getPublicKey(seed), bytes.slice(32))) {
      throw new TypeError("the secret key's public half does not belong to its seed");
    }
    return seed;
  }
  if (bytes.length !== 32) throw new TypeError("an ed25519 secret key is 32 (or 64) bytes");
  return bytes;
}

function secp256k1Secret(secretKey) {
  const bytes = toBytes(secretKey);
  if (!secp256k1.utils.isValidSecretKey(bytes)) {
    throw new TypeError("a secp256k1 secret key is 32 bytes in 1..n-1");
  }
  return bytes;
}

function toBytes(value) {
  if (!(value instanceof Uint8Array)) throw new TypeError("key.secretKey must be a Uint8Array");
  return Uint8Array.from(value);
}

function equal(a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** The EIP-55 checksummed address of a secp256k1 secret key. */
function ethereumAddress(secret) {
  const publicKey = secp256k1.getPublicKey(secret, false);
  const hex = toHex(keccak_256(publicKey.slice(1)).slice(-20));
  const hash = toHex(keccak_256(encoder.encode(hex)));
  const checksummed = [...hex].map((c, i) =>
    Number.parseInt(hash[i], 16) >= 8 ? c.toUpperCase() : c,
  );
  return "0x" + checksummed.join("");
}

/** EIP-191 `personal_sign`: r ‖ s ‖ v with v = 27 + recovery id, as `0x` hex. */
function personalSign(bytes, secret) {
  const prefix = encoder.encode(`\x19Ethereum Signed Message:\n${bytes.length}`);
  const digest = keccak_256(Uint8Array.of(...prefix, ...bytes));
  const recovered = secp256k1.sign(digest, secret, { prehash: false, format: "recovered" });
  return "0x" + toHex(recovered.slice(1)) + (27 + recovered[0]).toString(16);
}

function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
