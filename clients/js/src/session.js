/**
 * A signed-in session: the current access token, renewed by signing in again, and a
 * `fetch` that sends it. The token is attached as `Authorization: <token_type> <token>`
 * (RFC 6750 for `Bearer`), so a sender-constrained token type can add its proof header
 * in `#authorize` without changing this API.
 */

import { CLIENT_REASONS, KeyproofError } from "./errors.js";

const DEFAULT_RENEW_BEFORE = 30;

export class Session {
  #obtain;
  #fetch;
  #now;
  #renewBefore;
  #grant = null;
  #renewing = null;

  /** Use the signIn* functions; this is not called directly. */
  constructor({
    obtain,
    fetch,
    now = () => Date.now() / 1000,
    renewBefore = DEFAULT_RENEW_BEFORE,
  }) {
    this.#obtain = obtain;
    this.#fetch = fetch;
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

  get tokenType() {
    return this.#grant.tokenType;
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

  /** Sign in again now; concurrent callers share one renewal. */
  renew() {
    this.#renewing ??= this.#obtain()
      .then((grant) => this.#accept(grant))
      .finally(() => {
        this.#renewing = null;
      });
    return this.#renewing;
  }

  /** The access token, renewed first when it expires within the renewal margin. */
  async token() {
    if (this.#now() >= this.expiresAt - this.#margin()) await this.renew();
    return this.accessToken;
  }

  /**
   * `fetch` with the token attached. A `401` renews the token once and retries once; an
   * error answer in keyproof's shape (a keyproof guard's) is thrown as a KeyproofError.
   * @param {RequestInfo | URL} input
   * @param {RequestInit} [init]
   */
  async fetch(input, init) {
    const request = new Request(input, init);
    const used = await this.token();
    let response = await this.#fetch(this.#authorize(request.clone(), used));
    if (response.status === 401) {
      if (this.accessToken === used) await this.renew();
      response = await this.#fetch(this.#authorize(request, this.accessToken));
    }
    const refused = await KeyproofError.fromResponse(response.clone());
    if (refused) throw refused;
    return response;
  }

  #authorize(request, token) {
    const headers = new Headers(request.headers);
    headers.set("Authorization", `${this.tokenType} ${token}`);
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
    };
  }
}
