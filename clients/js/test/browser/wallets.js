// Test wallets for a real browser. In the page: an EIP-1193 provider (window.ethereum)
// and a Wallet Standard Solana wallet, each refusing a message whose domain is not the
// page's host, as wallets warn of phishing. Their keys stay in Node: a viem local
// account and a tweetnacl key pair sign there, reached through exposed functions.
import { createSignInMessageText } from "@solana/wallet-standard-util";
import { base58 } from "@scure/base";
import nacl from "tweetnacl";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

export function createWallets() {
  const ethereum = privateKeyToAccount(generatePrivateKey());
  const solana = nacl.sign.keyPair();
  const solanaAddress = base58.encode(solana.publicKey);
  const sign = (bytes) => Array.from(nacl.sign.detached(Uint8Array.from(bytes), solana.secretKey));
  const wallets = {
    /** How often the Ethereum wallet was asked to sign: each time a prompt for its user. */
    personalSigns: 0,
    ethereumAddress: ethereum.address,
    solanaAddress,
    solanaPublicKey: solana.publicKey,
    async expose(page) {
      await page.exposeFunction("__ethereumWallet", async (method, params) => {
        if (method === "eth_requestAccounts" || method === "eth_accounts")
          return [ethereum.address];
        if (method === "eth_chainId") return "0x1";
        if (method === "personal_sign") {
          wallets.personalSigns += 1;
          return ethereum.signMessage({ message: { raw: params[0] } });
        }
        throw new Error(`unsupported method ${method}`);
      });
      await page.exposeFunction("__solanaSignMessage", (bytes) => sign(bytes));
      await page.exposeFunction("__solanaSignIn", (input) => {
        const text = createSignInMessageText({ ...input, address: input.address ?? solanaAddress });
        const signedMessage = Array.from(new TextEncoder().encode(text));
        return { signedMessage, signature: sign(signedMessage) };
      });
    },
  };
  return wallets;
}

/** Runs in the page before its scripts (Playwright `addInitScript`). */
export function installWallets({ solanaAddress, solanaPublicKey, withSignIn }) {
  const refuseForeignDomain = (domain) => {
    if (domain !== location.host)
      throw new Error(`message domain ${domain} is not this page's ${location.host}`);
  };
  const firstWord = (text) => text.slice(0, text.indexOf(" "));
  const hexText = (hex) =>
    new TextDecoder().decode(Uint8Array.from(hex.slice(2).match(/../g), (h) => parseInt(h, 16)));

  window.ethereum = {
    async request({ method, params = [] }) {
      if (method === "personal_sign") refuseForeignDomain(firstWord(hexText(params[0])));
      return window.__ethereumWallet(method, params);
    },
  };

  const chains = ["solana:mainnet"];
  const account = {
    address: solanaAddress,
    publicKey: Uint8Array.from(solanaPublicKey),
    chains,
    features: [],
  };
  let accounts = [];
  const features = {
    "standard:connect": {
      version: "1.0.0",
      connect: async () => ((accounts = [account]), { accounts }),
    },
    "standard:events": { version: "1.0.0", on: () => () => {} },
    "solana:signMessage": {
      version: "1.0.0",
      signMessage: async ({ message }) => {
        refuseForeignDomain(firstWord(new TextDecoder().decode(message)));
        return [
          {
            signedMessage: message,
            signature: Uint8Array.from(await window.__solanaSignMessage(Array.from(message))),
          },
        ];
      },
    },
  };
  if (withSignIn) {
    features["solana:signIn"] = {
      version: "1.0.0",
      signIn: async (input) => {
        refuseForeignDomain(input.domain);
        const out = await window.__solanaSignIn(input);
        accounts = [account];
        return [
          {
            account,
            signedMessage: Uint8Array.from(out.signedMessage),
            signature: Uint8Array.from(out.signature),
          },
        ];
      },
    };
  }
  const wallet = {
    version: "1.0.0",
    name: withSignIn ? "Test Wallet (signIn)" : "Test Wallet (signMessage)",
    icon: "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=",
    chains,
    features,
    get accounts() {
      return accounts;
    },
  };
  // The Wallet Standard registration handshake (@wallet-standard/wallet registerWallet).
  const register = ({ register }) => register(wallet);
  window.addEventListener("wallet-standard:app-ready", ({ detail }) => register(detail));
  window.dispatchEvent(new CustomEvent("wallet-standard:register-wallet", { detail: register }));
}
