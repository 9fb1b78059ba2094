/**
 * Sign-In with Ethereum over any EIP-1193 provider (EIP-4361): the wallet signs the
 * challenge's exact text with `personal_sign` (EIP-191).
 */

import { signIn } from "./protocol.js";

/**
 * @param {import("./index.js").SignInOptions & {provider: import("./index.js").Eip1193Provider}} options
 */
export function signInWithEthereum({ provider, ...options }) {
  return signIn({ ...options, signer: eip1193Signer(provider) });
}

/** A signer for `signIn` that asks an EIP-1193 wallet. */
export function eip1193Signer(provider) {
  let address;
  return {
    async account() {
      const accounts = await provider.request({ method: "eth_requestAccounts" });
      address = accounts?.[0];
      if (typeof address !== "string") throw new TypeError("the wallet shared no account");
      const chainId = BigInt(await provider.request({ method: "eth_chainId" }));
      return `eip155:${chainId}:${address}`;
    },
    async sign(challenge) {
      const params = [utf8Hex(challenge.message), address];
      const signature = await provider.request({ method: "personal_sign", params });
      return { message: challenge.message, signature };
    },
  };
}

/** `0x` + hex of the UTF-8 bytes: how wallets take `personal_sign`'s message. */
function utf8Hex(text) {
  const bytes = new TextEncoder().encode(text);
  return "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
