"""Untrusted input never escapes as anything but a ``KeyproofError``.

Property tests for the parsers that see client text before any proof holds: account
ids, the family of a sign-in message, JSON bodies, scope strings, and the whole redeem
pipeline, on arbitrary input and on small mutations of valid input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import hypothesis
import pytest
from eth_account import Account
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from keyproof._httpio import MAX_JSON_DEPTH, _parse_object
from keyproof.accounts import families, family_for_message, parse_account
from keyproof.errors import (
    InvalidAccount,
    InvalidRequest,
    InvalidScope,
    KeyproofError,
    MalformedMessage,
    NonceRejected,
)
from keyproof.server.config import DEFAULT_CHAINS, Settings
from keyproof.server.policy import parse_scope_string
from keyproof.server.service import Service

from conftest import FrozenClock
from wallets import (
    SOLANA_MAINNET,
    AgentEd25519Wallet,
    AgentSecp256k1Wallet,
    EthWallet,
    SolanaWallet,
)

FAST = hypothesis.settings(max_examples=200, deadline=None)
# The service fixture is shared by every example of a test; each example makes its own
# challenge and moves the clock past the rate-limit window, so examples do not interact.
WITH_SERVICE = hypothesis.settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Characters that break naive parsers: lone surrogates, line and byte-order marks, NUL.
AWKWARD = ["\ud800", "\udfff", "\r", "\n", "\x00", "\u2028", "\ufeff", "é", " ", ":", "%"]
characters = st.characters() | st.sampled_from(AWKWARD)


def strings(*, min_size: int = 0, max_size: int) -> st.SearchStrategy[str]:
    # Not st.text(): it drops lone surrogates, which JSON escapes can still deliver.
    return st.lists(characters, min_size=min_size, max_size=max_size).map("".join)


texts = strings(max_size=300)


def _position(draw: st.DrawFn, size: int) -> int:
    # Drawn independently of ``size``: the texts mutated may differ between runs
    # (fresh nonces, variable-length base58) and Hypothesis must replay the same draws.
    return draw(st.integers(0, 2**16)) % size


@st.composite
def mutated(draw: st.DrawFn, originals: Sequence[str]) -> str:
    """One of ``originals`` with one small edit: insert, delete, replace, case, cut, repeat."""
    text = draw(st.sampled_from(originals))
    at = _position(draw, len(text) + 1)
    end = min(len(text), at + draw(st.integers(0, 8)))
    kind = draw(st.sampled_from(["insert", "delete", "replace", "case", "cut", "repeat"]))
    if kind == "insert":
        return text[:at] + draw(strings(min_size=1, max_size=3)) + text[at:]
    if kind == "delete":
        return text[:at] + text[end:]
    if kind == "replace":
        return text[:at] + draw(characters) + text[at + 1 :]
    if kind == "case":
        return text[:at] + text[at:end].swapcase() + text[end:]
    if kind == "cut":
        return text[:at]
    return text[:end] + text[at:end] + text[end:]


@st.composite
def line_mutated(draw: st.DrawFn, originals: Sequence[str]) -> str:
    """One of ``originals`` with one line deleted, repeated, swapped, blanked or CR-ended."""
    lines = draw(st.sampled_from(originals)).split("\n")
    index = _position(draw, len(lines))
    kind = draw(st.sampled_from(["delete", "repeat", "swap", "blank", "crlf", "trailing"]))
    if kind == "delete":
        del lines[index]
    elif kind == "repeat":
        lines.insert(index, lines[index])
    elif kind == "swap":
        other = _position(draw, len(lines))
        lines[index], lines[other] = lines[other], lines[index]
    elif kind == "blank":
        lines.insert(index, "")
    elif kind == "crlf":
        lines[index] += "\r"
    else:
        lines.append("")
    return "\n".join(lines)


# --- keyproof.accounts -----------------------------------------------------------------

ALLOWED = frozenset(DEFAULT_CHAINS) | {"eip155:137"}
VALID_ACCOUNTS = [
    "eip155:1:0x2c7536E3605D9C16a7a3D7b1898e529396a65c23",
    "eip155:137:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23",
    f"solana:{SOLANA_MAINNET}:FVen3X669xLzsi6N2V91DoiyzHzg1uAgqiT8jZ9nS96Z",
    "solana:mainnet:FVen3X669xLzsi6N2V91DoiyzHzg1uAgqiT8jZ9nS96Z",
    "did:key:z6MkiaMbhXHNA4eJVCCj8dbzKzTgYDKf6crKgHVHid1F1WCT",
    "did:key:zQ3shhe14AeNbkLWqrZxJRkj23i88k3KCvzDeX6a9gsCoQ89a",
]


def test_the_valid_account_ids_parse() -> None:
    for text in VALID_ACCOUNTS:
        assert parse_account(text, ALLOWED).namespace in families()


def _parse_account_or_refusal(text: str) -> None:
    try:
        account = parse_account(text, ALLOWED)
    except InvalidAccount:
        return
    # The canonical id is a fixed point and is what the family writes in its messages.
    assert parse_account(account.id, ALLOWED) == account


@FAST
@given(
    texts | st.builds("{}:{}".format, st.sampled_from(["eip155:1", "solana:x", "did:key"]), texts)
)
def test_parse_account_on_arbitrary_text(text: str) -> None:
    _parse_account_or_refusal(text)


@FAST
@given(mutated(VALID_ACCOUNTS))
def test_parse_account_on_mutated_valid_ids(text: str) -> None:
    _parse_account_or_refusal(text)


HEADERS = sorted(f"example.com{family.header_suffix}" for family in families().values())


@FAST
@given(texts | st.builds("{}{}".format, st.sampled_from(HEADERS), texts) | mutated(HEADERS))
def test_family_for_message_on_arbitrary_text(text: str) -> None:
    try:
        family = family_for_message(text)
    except MalformedMessage as refused:
        assert refused.code == "malformed_message"
        return
    assert text.split("\n", 1)[0].endswith(family.header_suffix)


# --- keyproof._httpio: JSON bodies ------------------------------------------------------


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(strings(max_size=8), inner, max_size=3)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(strings(max_size=8), json_values, max_size=4)
VALID_BODIES = [
    '{"message": "example.com wants you to sign in", "signature": "0x1b"}',
    '{"account": "eip155:1:0xabc", "scope": "escrow:read", "audience": null}',
    '{"a": [1, 2.5e3, {"b": [true, false, null]}], "c": "\\u00e9\\ud83d\\ude00"}',
    '{"deep": [[[[[[{"x": 1}]]]]]]}',  # the deepest nesting accepted
]


def _parse_or_invalid(body: bytes) -> dict[str, Any] | None:
    try:
        value = _parse_object(body)
    except InvalidRequest as refused:
        assert refused.code == "invalid_json"
        return None
    assert isinstance(value, dict)
    assert _depth(value) <= MAX_JSON_DEPTH
    return value


@FAST
@given(st.binary(max_size=300))
def test_parse_object_on_arbitrary_bytes(body: bytes) -> None:
    _parse_or_invalid(body)


@FAST
@given(mutated(VALID_BODIES).map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_parse_object_on_mutated_valid_json(body: bytes) -> None:
    _parse_or_invalid(body)


@FAST
@given(json_objects, st.booleans())
def test_parse_object_reads_every_plain_object(value: dict[str, Any], ascii_only: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    # ``\ud800\udc00`` escapes spell one character; raw surrogates are not UTF-8.
    meant = json.loads(body) if ascii_only else value
    has_surrogate = any("\ud800" <= c <= "\udfff" for text in _strings(meant) for c in text)
    if _depth(value) > MAX_JSON_DEPTH or has_surrogate:
        with pytest.raises(InvalidRequest):
            _parse_object(body)
    else:
        assert _parse_object(body) == meant


# --- keyproof.server.policy: scope strings ----------------------------------------------------

VALID_SCOPES = ["escrow:read", "escrow:read profile:read", "a:b a.b-c_d:e9 escrow:release", ""]


def _scopes_or_refusal(text: str) -> None:
    try:
        scopes = parse_scope_string(text)
    except InvalidScope as refused:
        assert refused.code == "unknown_scope"
        return
    assert list(scopes) == sorted(set(scopes))
    assert parse_scope_string(" ".join(scopes)) == scopes


@FAST
@given(texts)
def test_parse_scope_string_on_arbitrary_text(text: str) -> None:
    _scopes_or_refusal(text)


@FAST
@given(mutated(VALID_SCOPES))
def test_parse_scope_string_on_mutated_valid_strings(text: str) -> None:
    _scopes_or_refusal(text)


# --- the redeem pipeline ---------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, chains=(*settings.chains, *DEFAULT_CHAINS[1:]))


Signer = Callable[[str], str]


def _logins() -> dict[str, tuple[str, Signer]]:
    eth = EthWallet(Account.from_key(bytes(range(3, 35))))
    solana = SolanaWallet.create(bytes(range(32)))
    ed25519 = AgentEd25519Wallet.create(bytes(range(1, 33)))
    secp256k1 = AgentSecp256k1Wallet.create(bytes(range(2, 34)))
    return {
        "eip155": (eth.caip10(), eth.sign),
        "solana": (solana.caip10(), solana.sign),
        "did:key:ed25519": (ed25519.did, ed25519.sign),
        "did:key:secp256k1": (secp256k1.did, secp256k1.sign),
    }


LOGINS = _logins()


async def _signed(service: Service, clock: FrozenClock, login: str) -> tuple[str, str]:
    """A fresh challenge, signed; the clock first moves past every rate-limit window."""
    clock.advance(Settings.rate_window + 1)
    account, sign = LOGINS[login]
    challenge = await service.challenge(account, "escrow:read")
    return challenge.message, sign(challenge.message)


def _same_signature(login: str, original: str, other: str) -> bool:
    """Whether ``other`` spells the same signature (hex case, v as 27/28 or 0/1)."""
    if other == original:
        return True
    if login != "eip155" or re.fullmatch(r"0x[0-9a-fA-F]{130}", other, re.ASCII) is None:
        return False
    mine, theirs = bytes.fromhex(original[2:]), bytes.fromhex(other[2:])
    return mine[:64] == theirs[:64] and theirs[64] in (mine[64], mine[64] - 27)


async def _redeem_or_refusal(service: Service, message: str, signature: str) -> bool:
    """True when a token was issued; False on a keyproof refusal; anything else escapes."""
    try:
        await service.redeem(message, signature, client_ip="192.0.2.1")
    except KeyproofError:
        return False
    return True


redeem_texts = texts | st.builds("{}\n{}".format, st.sampled_from(HEADERS), strings(max_size=400))


@WITH_SERVICE
@given(redeem_texts, texts)
async def test_redeem_on_arbitrary_text_and_signature(
    service: Service, clock: FrozenClock, message: str, signature: str
) -> None:
    clock.advance(Settings.rate_window + 1)  # so no example stops at the limiter
    assert not await _redeem_or_refusal(service, message, signature)


@WITH_SERVICE
@given(st.sampled_from(sorted(LOGINS)), st.data())
async def test_redeem_of_a_mutated_message_never_yields_a_token(
    service: Service, clock: FrozenClock, login: str, data: st.DataObject
) -> None:
    message, signature = await _signed(service, clock, login)
    altered = data.draw(mutated([message]) | line_mutated([message]), label="message")
    issued = await _redeem_or_refusal(service, altered, signature)
    assert issued == (altered == message)
    if not issued:  # no refusal burns the challenge: the original still redeems
        assert await _redeem_or_refusal(service, message, signature)


@WITH_SERVICE
@given(st.sampled_from(sorted(LOGINS)), st.data())
async def test_redeem_with_a_mutated_signature_never_yields_a_token(
    service: Service, clock: FrozenClock, login: str, data: st.DataObject
) -> None:
    message, signature = await _signed(service, clock, login)
    altered = data.draw(mutated([signature]), label="signature")
    issued = await _redeem_or_refusal(service, message, altered)
    assert issued == _same_signature(login, signature, altered)
    if not issued:
        assert await _redeem_or_refusal(service, message, signature)


@pytest.mark.parametrize("login", sorted(LOGINS))
async def test_a_valid_login_of_each_family_redeems(
    service: Service, clock: FrozenClock, login: str
) -> None:
    # The mutation tests above are only meaningful if the unmutated proof succeeds.
    message, signature = await _signed(service, clock, login)
    assert await _redeem_or_refusal(service, message, signature)
    with pytest.raises(NonceRejected):
        await service.redeem(message, signature)
