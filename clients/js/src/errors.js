/**
 * keyproof's error shape, `{error, reason, error_description}` (specs/protocol.md §6),
 * as a typed error. `reason` is keyproof's stable code; a few codes are the client's own
 * (see CLIENT_REASONS).
 */

/** Reasons the client itself reports, never sent by a server. */
export const CLIENT_REASONS = Object.freeze({
  /** No answer: the network failed, or the browser refused the answer (CORS). */
  unreachable: "unreachable",
  /** An answer that is not keyproof's JSON, or metadata naming another issuer. */
  unexpectedResponse: "unexpected_response",
  /** A renewal signed in as another account than the session's. */
  accountChanged: "account_changed",
});

export class KeyproofError extends Error {
  /**
   * @param {{status: number, error: string, reason: string, description?: string,
   *          retryAfter?: number | null, cause?: unknown}} fields
   */
  constructor({ status, error, reason, description, retryAfter = null, cause }) {
    super(description || `${error}: ${reason}`, cause === undefined ? undefined : { cause });
    this.name = "KeyproofError";
    this.status = status;
    this.error = error;
    this.reason = reason;
    this.description = description ?? "";
    this.retryAfter = retryAfter;
  }

  /**
   * The error a response carries in keyproof's shape (also under FastAPI's `detail`),
   * or null when it carries none. Reads the body: pass a clone to keep the original.
   * @param {Response} response
   * @returns {Promise<KeyproofError | null>}
   */
  static async fromResponse(response) {
    if (response.ok) return null;
    const body = await response.json().catch(() => null);
    const shape = body?.detail && typeof body.detail === "object" ? body.detail : body;
    if (typeof shape?.error !== "string" || typeof shape?.reason !== "string") return null;
    const retryAfter = Number.parseInt(response.headers.get("retry-after") ?? "", 10);
    return new KeyproofError({
      status: response.status,
      error: shape.error,
      reason: shape.reason,
      description: typeof shape.error_description === "string" ? shape.error_description : "",
      retryAfter: Number.isNaN(retryAfter) ? null : retryAfter,
    });
  }
}

/** @param {string} description @param {number} [status] */
export function unexpectedResponse(description, status = 0) {
  return new KeyproofError({
    status,
    error: "invalid_response",
    reason: CLIENT_REASONS.unexpectedResponse,
    description,
  });
}

/** @param {string} url @param {unknown} cause */
export function unreachable(url, cause) {
  return new KeyproofError({
    status: 0,
    error: "network_error",
    reason: CLIENT_REASONS.unreachable,
    description: `no answer from ${new URL(url).origin} (network failure, or an origin it does not allow)`,
    cause,
  });
}
