"""Signed actions: a token holder authorizes one operation (specs/protocol.md, "Signed actions").

A backend that accepts a keyproof token for, say, ``escrow:release`` also wants proof
that the holder approved *this* release of *this* escrow, once. The client signs an
action document (format and examples in ``specs/protocol.md``, "Signed actions")::

    {"service", "audience", "chain", "type", "object", "id", "deadline",
     "amount"?, "currency"?}

Each account family says how its accounts sign it (:meth:`Family.verify_action
<keyproof.accounts.Family.verify_action>`): Ethereum accounts sign EIP-712 typed data
(domain ``{name: service, version: "1", chainId}``, primary type ``Action``), so wallets
show every field; ed25519 and did:key accounts sign ``ACTION_CONTEXT + RFC 8785
canonical JSON`` with their sign-in signature encoding
(:func:`verify_canonical_json_action`). :meth:`ActionVerifier.verify` checks, in this
order:

    schema and bounds -> domain separator (service, audience, type, object) -> chain
    of the token subject -> deadline window -> amount -> signature -> signer is the
    token ``sub`` (offline; a contract wallet on the action's chain only when that
    fails, :class:`keyproof.chain.ContractWallets`) -> atomic single use of the action
    id (kept until the deadline)

so a bad signature never burns an action id, and of concurrent submissions of one
action exactly one is accepted.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import rfc8785

from keyproof._time import Clock
from keyproof.accounts import Account, Family, canonical_account, families
from keyproof.chain import ContractWallets
from keyproof.crypto import eip712
from keyproof.errors import (
    ActionRejected,
    InvalidAction,
    KeyproofError,
    MalformedSignature,
    SignatureInvalid,
    TokenInvalid,
)
from keyproof.stores.base import Kind, Store

__all__ = [
    "ACTION_CONTEXT",
    "ACTION_TYPES",
    "Action",
    "ActionLimits",
    "ActionVerifier",
    "VerifiedAction",
    "signer_mismatch",
    "verify_canonical_json_action",
]

ACTION_CONTEXT: Final = b"keyproof-action-v1\n"
ACTION_TYPES: Final[eip712.Types] = {
    "Action": (
        ("audience", "string"),
        ("type", "string"),
        ("object", "string"),
        ("id", "string"),
        ("deadline", "uint256"),
        ("amount", "string"),
        ("currency", "string"),
    )
}
MAX_AMOUNT_DIGITS = 30
MAX_AMOUNT_SCALE = 18
MAX_DEADLINE = 2**53 - 1
TOKEN_REPLY_CLAIMS: Final = ("scope", "sub", "exp")

_FIELDS: Final = {
    "service": re.compile(r"[!-~](?:[ -~]{0,62}[!-~])?"),
    "audience": re.compile(r"https?://[!-~]{1,248}"),
    "chain": re.compile(r"[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}|did:key"),
    "type": re.compile(r"[a-z][a-z0-9_-]{0,31}(?:\.[a-z][a-z0-9_-]{0,31}){1,3}"),
    "object": re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"),
    "id": re.compile(r"[0-9a-f]{32}"),
    "amount": re.compile(r"[!-~]{1,64}"),
    "currency": re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}"),
}
_OPTIONAL: Final = frozenset({"amount", "currency"})
_AMOUNT: Final = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")


@dataclass(frozen=True, slots=True)
class Action:
    """A schema-checked action document. Construct with :meth:`parse`."""

    service: str
    audience: str
    chain: str
    type: str
    object: str
    id: str
    deadline: int
    amount: str | None = None
    currency: str | None = None

    @classmethod
    def parse(cls, document: Any) -> Action:
        """Check the fixed schema and every bound; raise ``malformed_action``."""
        if not isinstance(document, Mapping):
            raise _malformed("an action is a JSON object")
        unknown = set(document) - set(_FIELDS) - {"deadline"}
        if unknown:
            raise _malformed(f"unknown action member {sorted(map(str, unknown))[0][:32]!r}")
        values = {name: _text_member(document, name, pattern) for name, pattern in _FIELDS.items()}
        if (values["amount"] is None) != (values["currency"] is None):
            raise _malformed("amount and currency go together")
        deadline = document.get("deadline")
        if not isinstance(deadline, int) or isinstance(deadline, bool):
            raise _malformed("deadline must be an integer (unix seconds)")
        if not 0 < deadline <= MAX_DEADLINE:
            raise _malformed("deadline out of range")
        return cls(deadline=deadline, **values)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        """The document as signed: optional members only when present."""
        out: dict[str, Any] = {
            "service": self.service,
            "audience": self.audience,
            "chain": self.chain,
            "type": self.type,
            "object": self.object,
            "id": self.id,
            "deadline": self.deadline,
        }
        if self.amount is not None:
            out["amount"] = self.amount
            out["currency"] = self.currency
        return out

    def signing_input(self) -> bytes:
        """What ed25519 and did:key accounts sign: the context prefix + RFC 8785 JSON."""
        return ACTION_CONTEXT + bytes(rfc8785.dumps(self.to_json()))

    def typed_data(self) -> dict[str, Any]:
        """The ``eth_signTypedData_v4`` payload an Ethereum wallet signs and displays."""
        domain = self._domain()
        return {
            "types": {
                "EIP712Domain": [{"name": n, "type": t} for n, t in eip712.domain_types(domain)],
                "Action": [{"name": n, "type": t} for n, t in ACTION_TYPES["Action"]],
            },
            "primaryType": "Action",
            "domain": domain,
            "message": self._typed_message(),
        }

    def typed_data_digest(self) -> bytes:
        """The EIP-712 digest of :meth:`typed_data`."""
        return eip712.typed_data_digest(
            self._domain(), "Action", ACTION_TYPES, self._typed_message()
        )

    def _domain(self) -> dict[str, Any]:
        namespace, _, reference = self.chain.partition(":")
        if namespace != "eip155" or not reference.isdigit():
            raise InvalidAction("malformed_action", "EIP-712 actions need an eip155 chain")
        return {"name": self.service, "version": "1", "chainId": int(reference)}

    def _typed_message(self) -> dict[str, Any]:
        # Absent amount/currency are "" in the typed struct; "" is never a valid value.
        return {
            "audience": self.audience,
            "type": self.type,
            "object": self.object,
            "id": self.id,
            "deadline": self.deadline,
            "amount": self.amount or "",
            "currency": self.currency or "",
        }


@dataclass(frozen=True, slots=True)
class ActionLimits:
    """Bounds a deployment sets on actions it accepts."""

    max_horizon: int = 3600
    """Latest deadline accepted, in seconds from now."""
    max_amount: Decimal = Decimal(10**24)
    replay_margin: int = 60
    """Seconds a used id is kept past its deadline, for replicas with slower clocks."""


@dataclass(frozen=True, slots=True)
class VerifiedAction:
    """An action that passed every check; its id is now used up.

    ``claims`` are those of the token it was checked against; :meth:`to_json` repeats
    its ``scope``, ``sub`` and ``exp`` so a backend need not decode the token again.
    """

    action: Action
    signer: str
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        token = {name: self.claims[name] for name in TOKEN_REPLY_CLAIMS if name in self.claims}
        return {"valid": True, "action": self.action.to_json(), "signer": self.signer, **token}


class ActionVerifier:
    """Verifies actions for one service name, recording used ids in ``store``.

    ``wallets`` checks smart-contract wallets' signatures on the chains it has an RPC
    for; without it, only EOA signatures verify.
    """

    def __init__(
        self,
        store: Store,
        *,
        service: str,
        limits: ActionLimits | None = None,
        wallets: ContractWallets | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.service = service
        self.limits = limits or ActionLimits()
        self.wallets = wallets or ContractWallets()
        self.clock = clock

    async def verify(
        self,
        document: Any,
        signature: Any,
        *,
        claims: Mapping[str, Any],
        action_type: str,
        object_id: str,
    ) -> VerifiedAction:
        """Check ``document`` is ``action_type`` on ``object_id``, signed by the token holder.

        ``document`` is the JSON document as received (or an already parsed
        :class:`Action`). ``claims`` are those of an already verified access token. Raises
        ``InvalidAction``, ``ActionRejected``, ``MalformedSignature``, ``SignatureInvalid``
        or, when a contract wallet's chain cannot be asked, ``Unavailable``; records the
        action id only when everything else holds.
        """
        action = document if isinstance(document, Action) else Action.parse(document)
        family, account = _subject(claims)
        self._check_domain(action, claims, action_type, object_id)
        if action.chain != account.caip2:
            raise _domain_mismatch("chain")
        now = int(self.clock())
        self._check_deadline(action, now)
        self._check_amount(action)
        await self._check_signature(family, action, account, signature)
        await self._use(action, account, now)
        return VerifiedAction(action, account.id, claims)

    def _check_domain(
        self, action: Action, claims: Mapping[str, Any], type_: str, object_: str
    ) -> None:
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        checks = (
            ("service", action.service == self.service),
            ("audience", action.audience in audiences),
            ("type", action.type == type_),
            ("object", action.object == object_),
        )
        for name, ok in checks:
            if not ok:
                raise _domain_mismatch(name)

    def _check_deadline(self, action: Action, now: int) -> None:
        if action.deadline <= now:
            raise ActionRejected("action_expired", "the action's deadline has passed")
        if action.deadline > now + self.limits.max_horizon:
            raise InvalidAction("deadline_out_of_range", "the action's deadline is too far ahead")

    def _check_amount(self, action: Action) -> None:
        if action.amount is None:
            return
        match = _AMOUNT.fullmatch(action.amount)
        if (
            match is None
            or len(match.group(1)) > MAX_AMOUNT_DIGITS
            or len(match.group(2) or "") > MAX_AMOUNT_SCALE
            or not 0 < Decimal(action.amount) <= self.limits.max_amount
        ):
            raise InvalidAction("amount_out_of_range", "amount must be a positive decimal in range")

    async def _check_signature(
        self, family: Family, action: Action, account: Account, signature: Any
    ) -> None:
        if not isinstance(signature, str) or not 0 < len(signature) <= family.max_signature_chars:
            raise MalformedSignature("malformed_signature", "signature has an invalid length")
        try:
            family.verify_action(account, action, signature)
        except (MalformedSignature, SignatureInvalid, ActionRejected) as offline:
            digest = family.contract_action_digest(action)
            if digest is None:
                raise
            await self.wallets.verify(
                account, digest, signature, offline=offline, refused=signer_mismatch
            )

    async def _use(self, action: Action, account: Account, now: int) -> None:
        # Keyed by signer and id only, not by service: an id is single-use per
        # account across every service sharing the store (specs/protocol.md).
        key = hashlib.sha256(f"{account.id}\n{action.id}".encode()).hexdigest()
        ttl = action.deadline - now + self.limits.replay_margin
        if not await self.store.add(Kind.ACTION, key, b"1", ttl):
            raise ActionRejected("action_replayed", "this action was already used")


def _malformed(description: str) -> InvalidAction:
    return InvalidAction("malformed_action", description)


def _domain_mismatch(name: str) -> ActionRejected:
    return ActionRejected("action_domain_mismatch", f"the action's {name} is not this one")


def _text_member(document: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str | None:
    value = document.get(name)
    if value is None and name in _OPTIONAL and name not in document:
        return None
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise _malformed(f"action member {name!r} missing or invalid")
    return value


def _subject(claims: Mapping[str, Any]) -> tuple[Family, Account]:
    """The family and canonical account of a verified token's ``sub``."""
    sub = claims.get("sub")
    if not isinstance(sub, str):
        raise TokenInvalid("token_invalid", "token has no subject")
    try:
        # The token was minted for an allowed chain: the subject's own chain is allowed.
        account = canonical_account(sub)
    except KeyproofError:
        raise TokenInvalid("token_invalid", "token subject is not an account") from None
    return families()[account.namespace], account


def verify_canonical_json_action(
    family: Family, account: Account, action: Action, signature: str
) -> None:
    """The RFC 8785 action format: ``family`` verifies :meth:`Action.signing_input`."""
    try:
        family.verify(account, action.signing_input(), signature)
    except SignatureInvalid:
        # An ed25519/ECDSA check against the subject's key cannot tell a forged
        # signature from another key's: both mean "not signed by the holder".
        raise signer_mismatch() from None


def signer_mismatch() -> ActionRejected:
    """The refusal for an action signed by anyone but the token holder."""
    return ActionRejected("action_signer_mismatch", "the action is not signed by the token holder")
