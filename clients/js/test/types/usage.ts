// The declarations as an app and an agent use them; `tsc -p test/types` must accept it.
import {
  KeyproofError,
  signIn,
  signInWithEthereum,
  signInWithSolana,
  type Eip1193Provider,
  type Session,
  type Signer,
  type WalletStandardWallet,
} from "keyproof-client";
import { accountOf, signInWithKey, type AgentKey } from "keyproof-client/keys";

declare const provider: Eip1193Provider;
declare const wallet: WalletStandardWallet;

export async function app(issuer: string): Promise<string> {
  const session: Session = await signInWithEthereum({ issuer, provider, scope: "profile:read" });
  const solana = await signInWithSolana({
    issuer,
    wallet,
    scope: ["profile:read"],
    cluster: "devnet",
  });
  try {
    const response: Response = await session.fetch("https://api.example/profile", {
      method: "GET",
    });
    return `${session.account} ${solana.scopes.join(",")} ${response.status} ${session.expiresAt}`;
  } catch (error) {
    if (error instanceof KeyproofError)
      return `${error.status} ${error.reason} ${error.retryAfter ?? ""}`;
    throw error;
  }
}

export async function agent(issuer: string, secretKey: Uint8Array): Promise<string> {
  const key: AgentKey = { type: "ethereum", secretKey, chainId: 8453 };
  const session = await signInWithKey({ issuer, key, scope: "escrow:release", renewBefore: 10 });
  const token: string = await session.token();
  return `${accountOf(key)} ${token.length}`;
}

export async function custom(issuer: string, signer: Signer): Promise<void> {
  const session = await signIn({ issuer, signer, now: () => Date.now() / 1000 });
  await session.renew();
}

export async function sessions(issuer: string, signer: Signer): Promise<string> {
  const bound = await signIn({ issuer, signer });
  const key: CryptoKeyPair | null = bound.dpopKey;
  const bearer = await signIn({ issuer, signer, dpop: false });
  const types: ("DPoP" | "Bearer" | string)[] = [bound.tokenType, bearer.tokenType];
  return `${types.join(" ")} ${key?.privateKey.extractable}`;
}
