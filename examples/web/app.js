// The sign-in page: two buttons on keyproof-client, and what the session holds.
import { getWallets } from "@wallet-standard/app";
import { signInWithEthereum, signInWithSolana } from "keyproof-client";

const params = new URLSearchParams(location.search);
const issuer = params.get("issuer") ?? "http://127.0.0.1:8000";
const scope = params.get("scope") ?? "profile:read";
const $ = (id) => document.getElementById(id);
$("issuer").textContent = issuer;

function solanaWallet() {
  const usable = (wallet) =>
    wallet.chains.includes("solana:mainnet") &&
    ("solana:signIn" in wallet.features ||
      "solana:signMessage" in wallet.features);
  return getWallets().get().find(usable);
}

async function run(signIn) {
  $("error").hidden = true;
  try {
    const session = await signIn();
    $("account").textContent = session.account;
    $("scopes").textContent = session.scopes.join(" ") || "(none)";
    $("expires").textContent = new Date(session.expiresAt * 1000).toISOString();
    $("token-type").textContent = session.tokenType;
    $("session").hidden = false;
  } catch (error) {
    $("session").hidden = true;
    $("error").textContent =
      `Sign-in failed: ${error.reason ? `${error.reason}: ` : ""}${error.message}`;
    $("error").hidden = false;
  }
}

$("ethereum").addEventListener("click", () =>
  run(() => {
    if (!window.ethereum) throw new Error("no Ethereum wallet in this browser");
    return signInWithEthereum({ issuer, provider: window.ethereum, scope });
  }),
);

$("solana").addEventListener("click", () =>
  run(() => {
    const wallet = solanaWallet();
    if (!wallet) throw new Error("no Solana wallet in this browser");
    return signInWithSolana({ issuer, wallet, scope });
  }),
);
