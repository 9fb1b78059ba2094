/**
 * keyproof's browser and agent client: sign in with a wallet or a local key, get a
 * Session whose `fetch` sends the access token (bound to the session's DPoP key by
 * default) and keeps it fresh.
 */

/** Reasons the client itself reports (`status` 0), never sent by a server. */
export declare const CLIENT_REASONS: Readonly<{
  unreachable: "unreachable";
  unexpectedResponse: "unexpected_response";
  accountChanged: "account_changed";
}>;

/** keyproof's `{error, reason, error_description}` (specs/protocol.md §6, §7). */
export declare class KeyproofError extends Error {
  constructor(fields: {
    status: number;
    error: string;
    reason: string;
    description?: string;
    retryAfter?: number | null;
    cause?: unknown;
  });
  readonly name: "KeyproofError";
  /** HTTP status; 0 for the client's own reasons. */
  readonly status: number;
  /** The OAuth `error` (`invalid_grant`, `invalid_token`, ...). */
  readonly error: string;
  /** keyproof's stable code (`signature_invalid`, `nonce_used`, ...) or a CLIENT_REASONS value. */
  readonly reason: string;
  readonly description: string;
  /** Seconds from `Retry-After` (429, 503), else null. */
  readonly retryAfter: number | null;
  /** The error a response carries in keyproof's shape, or null. Reads the body. */
  static fromResponse(response: Response): Promise<KeyproofError | null>;
}

/** The answer of `POST /v1/challenge`. */
export interface Challenge {
  nonce: string;
  /** The exact text to sign. */
  message: string;
  /** The canonical account id the challenge is bound to. */
  account: string;
  scope: string;
  issued_at: string;
  expires_at: string;
}

/** What signs a challenge: a wallet, a local key, anything that holds the account's key. */
export interface Signer {
  /** The account id to sign in as (CAIP-10 or did:key; any address case). */
  account(): Promise<string>;
  /** The exact text signed (normally the challenge's) and the family's wire signature. */
  sign(challenge: Challenge): Promise<{ message: string; signature: string }>;
}

export type FetchLike = (input: Request | string | URL, init?: RequestInit) => Promise<Response>;

export interface SignInOptions {
  /** The keyproof issuer URL; endpoints are read from its RFC 8414 metadata. */
  issuer: string;
  /** Scopes to ask for: space-separated or a list. */
  scope?: string | readonly string[];
  /** One of the issuer's audiences; its first by default. */
  audience?: string;
  /** Used for keyproof and for Session.fetch; globalThis.fetch by default. */
  fetch?: FetchLike;
  /**
   * Bind the tokens to a per-session key (DPoP, RFC 9449; default true): a non-extractable
   * WebCrypto ES256 key, made at sign-in, signs a proof for every request, and the session
   * is kept with rotating refresh tokens, without asking the wallet again. `false`: plain
   * bearer tokens, each new one a new sign-in.
   */
  dpop?: boolean;
  /** Seconds before expiry at which the token is renewed (default 30, at most half its life). */
  renewBefore?: number;
  /** Clock for token expiry, in seconds since the epoch (default Date.now() / 1000). */
  now?: () => number;
}

/**
 * A signed-in account: its token, kept fresh (refreshed in a DPoP session, else by
 * signing in again), and a fetch that sends it.
 */
export declare class Session {
  private constructor();
  /** The canonical account id: the token's `sub`. */
  readonly account: string;
  /**
   * In a DPoP session the token alone authorizes nothing: send it with `fetch`, which
   * adds the proof.
   */
  readonly accessToken: string;
  /** The scheme of the Authorization header: "DPoP" (bound to dpopKey) or "Bearer". */
  readonly tokenType: "DPoP" | "Bearer" | (string & {});
  /** The key pair the token is bound to (its private key is not extractable), or null. */
  readonly dpopKey: CryptoKeyPair | null;
  /** Granted scopes, space-separated. */
  readonly scope: string;
  readonly scopes: string[];
  /** Expiry in seconds since the epoch, by this client's clock. */
  readonly expiresAt: number;
  /**
   * A new token now: refreshed, or by a new sign-in (the wallet is asked again) when the
   * session has ended or has no refresh token. Concurrent calls share one renewal.
   */
  renew(): Promise<void>;
  /** The access token, renewed first when it is about to expire. */
  token(): Promise<string>;
  /**
   * fetch with the token (and in a DPoP session a proof for this method and URL)
   * attached; renews it shortly before expiry and once on a 401 (then retries once), and
   * repeats a request once with the nonce a server asks for. An error answer in
   * keyproof's shape is thrown as KeyproofError.
   */
  fetch(input: Request | string | URL, init?: RequestInit): Promise<Response>;
}

/** A minimal EIP-1193 provider (window.ethereum and its kin). */
export interface Eip1193Provider {
  request(args: { method: string; params?: readonly unknown[] | object }): Promise<unknown>;
}

/** The parts of a Wallet Standard wallet that Solana sign-in uses. */
export interface WalletStandardWallet {
  readonly accounts: readonly { readonly address: string; readonly publicKey: Uint8Array }[];
  readonly features: Readonly<Record<string, unknown>>;
}

/** Wallet Standard `SolanaSignInInput`: the fields a wallet builds its message from. */
export interface SolanaSignInInput {
  domain: string;
  address: string;
  statement?: string;
  uri?: string;
  version?: string;
  chainId?: string;
  nonce?: string;
  issuedAt?: string;
  expirationTime?: string;
  notBefore?: string;
  requestId?: string;
  resources?: string[];
}

/** Sign in with an EIP-1193 wallet: `personal_sign` of the challenge's exact text. */
export declare function signInWithEthereum(
  options: SignInOptions & { provider: Eip1193Provider },
): Promise<Session>;

/**
 * Sign in with a Wallet Standard wallet: `solana:signIn` given the challenge's fields
 * when the wallet has it, else `solana:signMessage` of the exact text.
 * `cluster` names the chain (default "mainnet").
 */
export declare function signInWithSolana(
  options: SignInOptions & { wallet: WalletStandardWallet; cluster?: string },
): Promise<Session>;

/** Sign in with any Signer. */
export declare function signIn(options: SignInOptions & { signer: Signer }): Promise<Session>;

export declare function eip1193Signer(provider: Eip1193Provider): Signer;
export declare function walletStandardSigner(
  wallet: WalletStandardWallet,
  cluster?: string,
): Signer;
/** The SolanaSignInInput of a Sign In With Solana text. */
export declare function signInInput(text: string): SolanaSignInInput;

/** The issuer's RFC 8414 metadata; its `issuer` must be the one asked for. */
export declare function discover(
  issuer: string,
  options?: { fetch?: FetchLike },
): Promise<{
  issuer: string;
  challenge_endpoint: string;
  token_endpoint: string;
  [member: string]: unknown;
}>;

/**
 * `POST /v1/challenge`. `origin` names a relying party for a backend asking on its page's
 * behalf; `dpop_jkt` (an RFC 7638 thumbprint) binds the sign-in to that DPoP key.
 */
export declare function requestChallenge(
  metadata: { challenge_endpoint: string },
  body: { account: string; scope?: string; audience?: string; origin?: string; dpop_jkt?: string },
  fetch?: FetchLike,
): Promise<Challenge>;
