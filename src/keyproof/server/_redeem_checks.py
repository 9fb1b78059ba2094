"""What a redeem checks its input against: size limits, the nonce's binding, the
scopes the signer saw. ``keyproof.server.service`` calls these in the protocol's order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from keyproof.accounts import Account, Family, SignInMessage
from keyproof.chain import MAX_CONTRACT_SIGNATURE_CHARS
from keyproof.dpop import named_jkts
from keyproof.errors import (
    BindingCode,
    BindingMismatch,
    InvalidScope,
    MalformedMessage,
    MalformedSignature,
    SignatureInvalid,
)
from keyproof.messages import recap
from keyproof.server._records import decode_fields, encode_fields
from keyproof.server.policy import parse_scope_string

__all__ = [
    "JKT_PATTERN",
    "MAX_MESSAGE_BYTES",
    "Binding",
    "bounded_bytes",
    "check_binding",
    "check_signature_length",
    "contract_refused",
    "narrowed_scopes",
    "signed_scopes",
]

MAX_MESSAGE_BYTES = 8192
JKT_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class Binding:
    """What a nonce is bound to, kept in the store until it is consumed or expires."""

    namespace: str
    account: str
    chain: str
    domain: str
    uri: str
    audience: str
    scopes: tuple[str, ...]
    issued_at: int
    expires_at: int
    dpop_jkt: str | None = None
    """The DPoP key thumbprint the sign-in is bound to, written into the message."""

    def encode(self) -> bytes:
        return encode_fields(self)

    @classmethod
    def decode(cls, data: bytes) -> Binding:
        return cls(**decode_fields(data))


def bounded_bytes(message: str, signature: str) -> bytes:
    """The exact bytes that were signed, after the size limits on both inputs."""
    if len(message) > MAX_MESSAGE_BYTES:
        raise MalformedMessage("message_too_long", f"message exceeds {MAX_MESSAGE_BYTES} bytes")
    try:
        encoded = message.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedMessage("malformed_message", "message is not valid Unicode") from None
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise MalformedMessage("message_too_long", f"message exceeds {MAX_MESSAGE_BYTES} bytes")
    if not signature or len(signature) > MAX_CONTRACT_SIGNATURE_CHARS:  # no family takes more
        raise MalformedSignature("malformed_signature", "signature has an invalid length")
    return encoded


def check_signature_length(family: Family, signature: str) -> None:
    """Longer signatures only for families whose accounts may be contract wallets."""
    if len(signature) > family.max_signature_chars:
        raise MalformedSignature("malformed_signature", "signature has an invalid length")


def contract_refused() -> SignatureInvalid:
    return SignatureInvalid("signature_invalid", "the contract wallet refused the signature")


def check_binding(message: SignInMessage, account: Account, binding: Binding) -> None:
    checks: tuple[tuple[BindingCode, bool], ...] = (
        ("account_mismatch", account.namespace == binding.namespace),
        ("chain_mismatch", account.chain == binding.chain),
        ("account_mismatch", account.id == binding.account),
        ("domain_mismatch", message.domain == binding.domain),
        # An origin scheme, where the format has one, must be the configured URI's.
        ("domain_mismatch", message.scheme in (None, _scheme(binding.uri))),
        ("uri_mismatch", message.uri == binding.uri),
        ("dpop_key_mismatch", named_jkts(message.resources) == bound_jkts(binding)),
    )
    for code, ok in checks:
        if not ok:
            raise BindingMismatch(code, f"message does not match the challenge ({code})")


def bound_jkts(binding: Binding) -> list[str]:
    return [] if binding.dpop_jkt is None else [binding.dpop_jkt]


def narrowed_scopes(session_scopes: tuple[str, ...], scope: str | None) -> tuple[str, ...]:
    """The scopes a refresh asks for: the session's, or a subset of them (RFC 6749 §6)."""
    if scope is None:
        return session_scopes
    asked = parse_scope_string(scope)
    wider = [s for s in asked if s not in session_scopes]
    if wider:
        raise InvalidScope("scope_not_allowed", f"not granted to this session: {wider[0]}")
    return asked


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0]


def signed_scopes(message: SignInMessage, binding: Binding) -> frozenset[str]:
    """Scopes the signer saw: only the ReCap (last resource, stated in the statement)."""
    capability = recap.signed_capability(message.statement, message.resources)
    return recap.scopes_of(capability, binding.audience) if capability else frozenset()
