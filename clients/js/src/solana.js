/**
 * Sign In With Solana over a Wallet Standard wallet. With the `solana:signIn` feature
 * the wallet builds the message itself from the fields it is given: it is given every
 * field of the challenge, so it builds the challenge's text. Otherwise the wallet signs
 * the challenge's exact bytes with `solana:signMessage`.
 */

import { base58 } from "@scure/base";

import { signIn } from "./protocol.js";

const HEADER = " wants you to sign in with your Solana account:";
const LABELS = new Map([
  ["URI", "uri"],
  ["Version", "version"],
  ["Chain ID", "chainId"],
  ["Nonce", "nonce"],
  ["Issued At", "issuedAt"],
  ["Expiration Time", "expirationTime"],
  ["Not Before", "notBefore"],
  ["Request ID", "requestId"],
]);

/**
 * @param {import("./index.js").SignInOptions & {wallet: import("./index.js").WalletStandardWallet, cluster?: string}} options
 */
export function signInWithSolana({ wallet, cluster = "mainnet", ...options }) {
  return signIn({ ...options, signer: walletStandardSigner(wallet, cluster) });
}

/** A signer for `signIn` that asks a Wallet Standard wallet. */
export function walletStandardSigner(wallet, cluster = "mainnet") {
  let account;
  return {
    async account() {
      const accounts = wallet.accounts.length
        ? wallet.accounts
        : (await feature(wallet, "standard:connect").connect()).accounts;
      account = accounts[0];
      if (!account) throw new TypeError("the wallet shared no account");
      return `solana:${cluster}:${account.address}`;
    },
    async sign(challenge) {
      if (wallet.features["solana:signIn"]) {
        const [out] = await wallet.features["solana:signIn"].signIn(signInInput(challenge.message));
        return {
          message: new TextDecoder().decode(out.signedMessage),
          signature: base58.encode(out.signature),
        };
      }
      const message = new TextEncoder().encode(challenge.message);
      const [out] = await feature(wallet, "solana:signMessage").signMessage({ account, message });
      return { message: challenge.message, signature: base58.encode(out.signature) };
    },
  };
}

/**
 * The Wallet Standard `SolanaSignInInput` of a Sign In With Solana text: its fields,
 * which `createSignInMessageText` turns back into the same text.
 * @param {string} text
 */
export function signInInput(text) {
  const lines = text.split("\n");
  if (!lines[0].endsWith(HEADER) || lines.length < 2) {
    throw new TypeError("not a Sign In With Solana message");
  }
  const input = { domain: lines[0].slice(0, -HEADER.length), address: lines[1] };
  let at = 3;
  if (at < lines.length && !isField(lines[at])) {
    input.statement = lines[at];
    at += 2;
  }
  for (; at < lines.length; at++) {
    if (lines[at] === "Resources:") {
      input.resources = lines.slice(at + 1).map((line) => line.slice(2));
      break;
    }
    const split = lines[at].indexOf(": ");
    const name = LABELS.get(lines[at].slice(0, split));
    if (split < 0 || !name) throw new TypeError(`unexpected line in the message: ${lines[at]}`);
    input[name] = lines[at].slice(split + 2);
  }
  return input;
}

function isField(line) {
  return line === "Resources:" || LABELS.has(line.slice(0, line.indexOf(": ")));
}

function feature(wallet, name) {
  const found = wallet.features[name];
  if (!found) throw new TypeError(`the wallet has no ${name} feature`);
  return found;
}
