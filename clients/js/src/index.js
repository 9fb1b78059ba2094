/**
 * keyproof's browser and agent client. Browser wallets: `signInWithEthereum` (EIP-1193)
 * and `signInWithSolana` (Wallet Standard). Local keys: `signInWithKey` from
 * `keyproof-client/keys`. Each returns a Session with the token and a `fetch` that
 * sends and renews it.
 */

export { CLIENT_REASONS, KeyproofError } from "./errors.js";
export { eip1193Signer, signInWithEthereum } from "./ethereum.js";
export { discover, requestChallenge, signIn } from "./protocol.js";
export { Session } from "./session.js";
export { signInInput, signInWithSolana, walletStandardSigner } from "./solana.js";
