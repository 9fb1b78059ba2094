"""Every failure keyproof reports, each with a stable machine-readable ``code``.

The codes are part of the API: they appear as ``reason`` in HTTP error bodies and in
the table in ``specs/protocol.md``; a test keeps the two in step.

Hierarchy::

    KeyproofError                       code, status, oauth_error
    ├── InvalidRequest          400     malformed input (nothing was proven or refused)
    │   ├── MalformedMessage            the signed text breaks its grammar
    │   ├── MalformedSignature          wrong length, encoding or recovery id
    │   ├── InvalidAccount              account id unparseable or not allowed
    │   ├── InvalidScope                scope unknown or not grantable
    │   ├── InvalidAction               signed action document malformed
    │   ├── UnsupportedGrantType        a token request's grant_type is not served
    │   ├── RequestTimeout      408     the body did not arrive within body_timeout
    │   ├── PayloadTooLarge     413
    │   ├── UnsupportedMediaType 415
    │   └── HeadersTooLarge     431     the request line and headers exceed max_header_bytes
    ├── ProofRejected           401     the proof was well-formed but does not hold
    │   ├── BindingMismatch             a field differs from what the challenge bound
    │   ├── OutsideValidity             time window check failed
    │   ├── NonceRejected               unknown, expired or already used nonce
    │   ├── SignatureInvalid            the signature does not verify for the account
    │   └── ActionRejected              signed action replayed, expired or not the holder's
    ├── RefreshRejected         400     refresh token unknown, reused, or its session over
    ├── DPoPProofInvalid        400     DPoP proof missing, malformed, replayed, misdirected
    ├── DPoPNonceRequired       400     the proof must carry the server's DPoP-Nonce
    ├── TokenInvalid            401     a presented access token is not acceptable
    ├── ClientAuthenticationFailed 401  introspection caller's credentials missing or wrong
    ├── InsufficientScope       403
    ├── NotFound                404
    ├── MethodNotAllowed        405
    ├── RateLimited             429     carries ``retry_after``
    ├── Unavailable             503     a dependency is down; fail closed
    └── ConfigurationError              invalid settings, raised at startup only

Each concrete class spells its codes once, as the ``Literal`` type of its ``code``
parameter: mypy refuses a misspelt code where the error is raised, and ``codes`` is
derived from that annotation. Public messages never contain secrets or oracle detail
about why a signature failed.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args, get_type_hints

__all__ = [
    "ActionRejected",
    "BindingCode",
    "BindingMismatch",
    "ClientAuthenticationFailed",
    "ConfigurationError",
    "DPoPNonceRequired",
    "DPoPProofInvalid",
    "HeadersTooLarge",
    "InsufficientScope",
    "InvalidAccount",
    "InvalidAction",
    "InvalidRequest",
    "InvalidScope",
    "KeyproofError",
    "MalformedMessage",
    "MalformedSignature",
    "MethodNotAllowed",
    "NonceRejected",
    "NotFound",
    "OutsideValidity",
    "PayloadTooLarge",
    "ProofRejected",
    "RateLimitCode",
    "RateLimited",
    "RefreshRejected",
    "RequestTimeout",
    "SignatureInvalid",
    "TokenInvalid",
    "Unavailable",
    "UnsupportedGrantType",
    "UnsupportedMediaType",
    "all_codes",
]


class KeyproofError(Exception):
    """Root of every keyproof error.

    ``code`` is the stable snake_case identifier; ``status`` the HTTP status;
    ``oauth_error`` the RFC 6749 style ``error`` member of the JSON body.
    """

    status: ClassVar[int] = 400
    oauth_error: ClassVar[str] = "invalid_request"
    codes: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        hint = get_type_hints(init).get("code") if init is not None else None
        cls.codes = frozenset(get_args(hint)) if hint is not None else frozenset()

    def __init__(self, code: str, description: str) -> None:
        if code not in self.codes:
            raise ValueError(f"{type(self).__name__} has no code {code!r}")
        super().__init__(description)
        self.code = code
        self.description = description

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.description!r})"


class InvalidRequest(KeyproofError):
    def __init__(
        self,
        code: Literal[
            "invalid_json", "invalid_field", "missing_field", "not_supported", "invalid_http"
        ],
        description: str,
    ) -> None:
        super().__init__(code, description)


class MalformedMessage(InvalidRequest):
    def __init__(
        self, code: Literal["malformed_message", "message_too_long"], description: str
    ) -> None:
        KeyproofError.__init__(self, code, description)


class MalformedSignature(InvalidRequest):
    def __init__(self, code: Literal["malformed_signature"], description: str) -> None:
        KeyproofError.__init__(self, code, description)


class InvalidAccount(InvalidRequest):
    def __init__(
        self,
        code: Literal["invalid_account", "unsupported_account", "invalid_public_key"],
        description: str,
    ) -> None:
        KeyproofError.__init__(self, code, description)


class InvalidScope(InvalidRequest):
    oauth_error = "invalid_scope"

    def __init__(
        self,
        code: Literal["unknown_scope", "scope_not_allowed", "invalid_audience"],
        description: str,
    ) -> None:
        KeyproofError.__init__(self, code, description)


class InvalidAction(InvalidRequest):
    def __init__(
        self,
        code: Literal["malformed_action", "amount_out_of_range", "deadline_out_of_range"],
        description: str,
    ) -> None:
        KeyproofError.__init__(self, code, description)


class UnsupportedGrantType(InvalidRequest):
    """RFC 6749 §5.2: the token endpoint does not serve this ``grant_type``."""

    oauth_error = "unsupported_grant_type"

    def __init__(self, code: Literal["unsupported_grant_type"], description: str) -> None:
        KeyproofError.__init__(self, code, description)


class RequestTimeout(InvalidRequest):
    status = 408

    def __init__(self, code: Literal["request_timeout"], description: str) -> None:
        KeyproofError.__init__(self, code, description)


class PayloadTooLarge(InvalidRequest):
    status = 413

    def __init__(self, code: Literal["payload_too_large"], description: str) -> None:
        KeyproofError.__init__(self, code, description)


class UnsupportedMediaType(InvalidRequest):
    status = 415

    def __init__(self, code: Literal["unsupported_media_type"], description: str) -> None:
        KeyproofError.__init__(self, code, description)


class HeadersTooLarge(InvalidRequest):
    status = 431

    def __init__(self, code: Literal["headers_too_large"], description: str) -> None:
        KeyproofError.__init__(self, code, description)


class ProofRejected(KeyproofError):
    status = 401
    oauth_error = "invalid_grant"


BindingCode = Literal[
    "domain_mismatch", "uri_mismatch", "chain_mismatch", "account_mismatch", "dpop_key_mismatch"
]


class BindingMismatch(ProofRejected):
    def __init__(self, code: BindingCode, description: str) -> None:
        super().__init__(code, description)


class OutsideValidity(ProofRejected):
    def __init__(
        self,
        code: Literal["message_expired", "message_not_yet_valid", "issued_at_invalid"],
        description: str,
    ) -> None:
        super().__init__(code, description)


class NonceRejected(ProofRejected):
    def __init__(self, code: Literal["nonce_unknown", "nonce_used"], description: str) -> None:
        super().__init__(code, description)


class SignatureInvalid(ProofRejected):
    def __init__(self, code: Literal["signature_invalid"], description: str) -> None:
        super().__init__(code, description)


class ActionRejected(ProofRejected):
    def __init__(
        self,
        code: Literal[
            "action_replayed", "action_expired", "action_signer_mismatch", "action_domain_mismatch"
        ],
        description: str,
    ) -> None:
        super().__init__(code, description)


class RefreshRejected(KeyproofError):
    """A refresh token that grants nothing (RFC 6749 §5.2 ``invalid_grant``, status 400).

    ``refresh_token_reused`` also ends the session: a used token came back, so two
    parties hold it.
    """

    oauth_error = "invalid_grant"

    def __init__(
        self,
        code: Literal[
            "refresh_token_invalid", "refresh_token_reused", "session_expired", "session_revoked"
        ],
        description: str,
    ) -> None:
        super().__init__(code, description)


class DPoPProofInvalid(KeyproofError):
    """A DPoP proof (RFC 9449) missing, malformed, replayed or for another request."""

    oauth_error = "invalid_dpop_proof"

    def __init__(self, code: Literal["invalid_dpop_proof"], description: str) -> None:
        super().__init__(code, description)


class DPoPNonceRequired(KeyproofError):
    """The proof must carry the server's current ``DPoP-Nonce`` (RFC 9449 §8)."""

    oauth_error = "use_dpop_nonce"

    def __init__(self, code: Literal["use_dpop_nonce"], description: str, *, nonce: str) -> None:
        super().__init__(code, description)
        self.nonce = nonce


class TokenInvalid(KeyproofError):
    status = 401
    oauth_error = "invalid_token"

    def __init__(
        self, code: Literal["token_invalid", "token_expired", "token_revoked"], description: str
    ) -> None:
        super().__init__(code, description)


class ClientAuthenticationFailed(KeyproofError):
    """A resource server calling introspection did not authenticate (RFC 6749 §5.2)."""

    status = 401
    oauth_error = "invalid_client"

    def __init__(self, code: Literal["invalid_client"], description: str) -> None:
        super().__init__(code, description)


class InsufficientScope(KeyproofError):
    status = 403
    oauth_error = "insufficient_scope"

    def __init__(self, code: Literal["insufficient_scope"], description: str) -> None:
        super().__init__(code, description)


class NotFound(KeyproofError):
    status = 404
    oauth_error = "not_found"

    def __init__(self, code: Literal["not_found"], description: str) -> None:
        super().__init__(code, description)


class MethodNotAllowed(KeyproofError):
    status = 405
    oauth_error = "invalid_request"

    def __init__(self, code: Literal["method_not_allowed"], description: str) -> None:
        super().__init__(code, description)


RateLimitCode = Literal["rate_limited", "too_many_challenges"]


class RateLimited(KeyproofError):
    status = 429
    oauth_error = "slow_down"

    def __init__(self, code: RateLimitCode, description: str, *, retry_after: int) -> None:
        super().__init__(code, description)
        self.retry_after = retry_after


class Unavailable(KeyproofError):
    status = 503
    oauth_error = "temporarily_unavailable"

    def __init__(
        self,
        code: Literal["store_unavailable", "upstream_unavailable", "keys_unavailable"],
        description: str,
        *,
        retry_after: int = 1,
    ) -> None:
        super().__init__(code, description)
        self.retry_after = retry_after


class ConfigurationError(KeyproofError):
    status = 500
    oauth_error = "server_error"

    def __init__(
        self,
        code: Literal[
            "invalid_setting",
            "invalid_policy",
            "invalid_key_file",
            "key_in_use",
            "insecure_permissions",
            "address_in_use",
            "store_schema_too_new",
        ],
        description: str,
    ) -> None:
        super().__init__(code, description)


def _concrete_classes() -> list[type[KeyproofError]]:
    found: list[type[KeyproofError]] = []
    pending: list[type[KeyproofError]] = [KeyproofError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def all_codes() -> dict[str, type[KeyproofError]]:
    """Map every code to the class that raises it (each code belongs to one class)."""
    return {code: cls for cls in _concrete_classes() for code in cls.codes}
