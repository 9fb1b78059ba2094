/** Sign in with a local key (agents, scripts): did:key ed25519/secp256k1, Ethereum, Solana. */

import type { Session, SignInOptions, Signer } from "./index.js";

export type AgentKey =
  /** did:key:z6Mk… ; secretKey is the 32-byte seed (or NaCl's 64-byte seed ‖ public key). */
  | { type: "ed25519"; secretKey: Uint8Array }
  /** did:key:zQ3s… ; secretKey is the 32-byte private scalar. */
  | { type: "secp256k1"; secretKey: Uint8Array }
  /** eip155:<chainId>:<EIP-55 address>; chainId defaults to 1. */
  | { type: "ethereum"; secretKey: Uint8Array; chainId?: number }
  /** solana:<cluster>:<base58 key>; cluster defaults to "mainnet". */
  | { type: "solana"; secretKey: Uint8Array; cluster?: string };

export interface SignInWithKeyOptions extends SignInOptions {
  key: AgentKey;
}

export declare const KEY_TYPES: readonly ["ed25519", "secp256k1", "ethereum", "solana"];

/** Sign in with a local key. */
export declare function signInWithKey(options: SignInWithKeyOptions): Promise<Session>;
/** A Signer holding the key. */
export declare function keySigner(key: AgentKey): Signer;
/** The account id a key signs in as. */
export declare function accountOf(key: AgentKey): string;
