/**
 * A signed-in session: the current access token, kept fresh, and a `fetch` that sends
 * it. A DPoP session (specs/protocol.md §10, §11) refreshes with its rotating refresh
 * token and signs in again (a wallet prompt) only when the session has ended; a bearer
 * session (`dpop: false`) signs in again for every new token. The token goes out as
 * `Authorization: <token_type> <token>`, with a `DPoP` proof when the type is `DPoP`.
 */

import { CLIENT_REASONS, KeyproofError } from "./errors.js";

const DEFAULT_RENEW_BEFORE = 30;
/** `invalid_grant` reasons of a refresh that mean the session is over (§11.2). */
const SESSION_ENDED = new Set([
  "refresh_token_invalid",
  "refresh_token_reused",
  "session_expired",
  "session_revoked",
]);

export class Session {
  #signIn;
  #refresh;
  #fetch;
  #nonces;
  #now;
  #renewBefore;
  #grant = null;
  #renewing = null;

  /** Use the signIn* functions; this is not called directly. */
  constructor({
    signIn,
    refresh,
    fetch,
    nonces,
    now = () => Date.now() / 1000,
    renewBefore = DEFAULT_RENEW_BEFORE,
  }) {
    this.#signIn = signIn;
    this.#refresh = refresh;
    this.#fetch = fetch;
    this.#nonces = nonces;
    this.#now = now;
    this.#renewBefore = renewBefore;
  }

  static async start(options) {
    const session = new Session(options);
    await session.renew();
    return session;
  }

  /** The canonical account id: the token's `sub`. */
  get account() {
    return this.#grant.account;
  }

  get accessToken() {
    return this.#grant.accessToken;
  }

  /** `DPoP` for a token bound to this session's key, `Bearer` otherwise. */
  get tokenType() {
    return this.#grant.tokenType;
  }

  /** The session's DPoP key pair (its private key is not extractable), or null. */
  get dpopKey() {
    return this.#grant.key?.keyPair ?? null;
  }

  /** The granted scopes, space-separated. */
  get scope() {
    return this.#grant.scope;
  }

  get scopes() {
    return this.scope ? this.scope.split(" ") : [];
  }

  /** When the token expires, in seconds since the epoch (by this client's clock). */
  get expiresAt() {
    return this.#grant.expiresAt;
  }

  /**
   * A new token now: refreshed, or by a new sign-in when the session has ended or has no
   * refresh token. Concurrent callers share one renewal, so one refresh token is never
   * presented twice (that would end the session, §11.2).
   */
  renew() {
    this.#renewing ??= this.#next()
      .then((grant) => this.#accept(grant))
      .finally(() => {
        this.#renewing = null;
      });
    return this.#renewing;
  }

  async #next() {
    const current = this.#grant;
    if (current?.refreshToken) {
      try {
        return await this.#refresh(current);
      } catch (error) {
        if (!(error instanceof KeyproofError && SESSION_ENDED.has(error.reason))) throw error;
      }
    }
    return this.#signIn();
  }

  /** The access token, renewed first when it expires within the renewal margin. */
  async token() {
    if (this.#now() >= this.expiresAt - this.#margin()) await this.renew();
    return this.accessToken;
  }

  /**
   * `fetch` with the token (and its DPoP proof) attached. A `401` renews the token once
   * and retries once; an error answer in keyproof's shape (a keyproof guard's) is thrown
   * as a KeyproofError.
   * @param {RequestInfo | URL} input
   * @param {RequestInit} [init]
   */
  async fetch(input, init) {
    const request = new Request(input, init);
    const used = await this.token();
    let response = await this.#send(request, used);
    if (response.status === 401) {
      if (this.accessToken === used) await this.renew();
      response = await this.#send(request, this.accessToken);
    }
    const refused = await KeyproofError.fromResponse(response.clone());
    if (refused) throw refused;
    return response;
  }

  /** One request; once more with a new nonce if the server asks for one (RFC 9449 §9). */
  async #send(request, token) {
    const response = await this.#fetch(await this.#authorize(request.clone(), token));
    if (this.tokenType !== "DPoP" || !(await this.#nonces.remember(request.url, response))) {
      return response;
    }
    return this.#fetch(await this.#authorize(request.clone(), token));
  }

  async #authorize(request, token) {
    const headers = new Headers(request.headers);
    headers.set("Authorization", `${this.tokenType} ${token}`);
    if (this.tokenType === "DPoP") {
      const { method, url } = request;
      const nonce = this.#nonces.get(url);
      headers.set("DPoP", await this.#grant.key.proof({ method, url, accessToken: token, nonce }));
    }
    return new Request(request, { headers });
  }

  #margin() {
    return Math.min(this.#renewBefore, this.#grant.lifetime / 2);
  }

  #accept(grant) {
    if (this.#grant && grant.account !== this.#grant.account) {
      throw new KeyproofError({
        status: 0,
        error: "invalid_grant",
        reason: CLIENT_REASONS.accountChanged,
        description: "the wallet signed in as another account; start a new session",
      });
    }
    this.#grant = {
      account: grant.account,
      accessToken: grant.access_token,
      tokenType: grant.token_type,
      scope: grant.scope,
      lifetime: grant.expires_in,
      expiresAt: this.#now() + grant.expires_in,
      refreshToken: grant.refresh_token ?? null,
      key: grant.token_type === "DPoP" ? grant.key : null,
    };
  }
}
