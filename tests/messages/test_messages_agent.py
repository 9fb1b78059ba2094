"""The did:key sign-in text: strict parsing, exact rendering, the agent-key family."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import coincurve
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyproof.accounts import Account, ChallengeText, parse_account
from keyproof.crypto.didkey import encode_did_key
from keyproof.crypto.encoding import encode_base58, encode_base64url
from keyproof.errors import (
    InvalidAccount,
    KeyproofError,
    MalformedMessage,
    MalformedSignature,
    SignatureInvalid,
)
from keyproof.messages import agent
from keyproof.messages.agent import FAMILY, AgentMessage

from helpers import (
    FAST,
    assert_round_trips,
    authorities,
    example_challenge,
    nonces,
    parse_or_keyproof_error,
    segments,
    spec_example,
    statements,
    times,
    uris,
    with_value,
)
from wallets import AgentEd25519Wallet, AgentSecp256k1Wallet, SolanaWallet

ED = AgentEd25519Wallet.create(bytes(range(32)))
SECP = AgentSecp256k1Wallet.create(bytes(range(1, 33)))
SMALL_ORDER = bytes([1] + [0] * 31)


def text_for(did: str, statement: str | None = "Sign in with your key.") -> str:
    middle = "" if statement is None else f"{statement}\n"
    return (
        f"https://example.com wants you to sign in with your key:\n{did}\n\n{middle}\n"
        "URI: https://example.com/login\n"
        "Version: 1\n"
        "Nonce: Ab12Cd34Ef56\n"
        "Issued At: 2027-01-15T08:00:00Z\n"
        "Expiration Time: 2027-01-15T08:05:00Z\n"
        "Not Before: 2027-01-15T07:59:00Z\n"
        "Request ID: req-42\n"
        "Resources:\n"
        "- https://example.com/a"
    )


FULL = text_for(ED.did)
NO_STATEMENT = text_for(SECP.did, None)
ALLOWED = frozenset({"did:key"})


@pytest.mark.parametrize("text", [FULL, NO_STATEMENT], ids=["full", "no-statement"])
def test_valid_messages_round_trip_byte_for_byte(text: str) -> None:
    assert agent.parse(text).to_text() == text


def test_no_statement_keeps_siwe_two_blank_lines() -> None:
    assert f"{SECP.did}\n\n\nURI: " in NO_STATEMENT
    assert agent.parse(NO_STATEMENT).statement is None


def test_full_message_fields() -> None:
    message = agent.parse(FULL)
    assert (message.scheme, message.domain, message.address) == ("https", "example.com", ED.did)
    assert message.statement == "Sign in with your key."
    assert message.nonce == "Ab12Cd34Ef56"
    assert message.resources == ("https://example.com/a",)
    assert message.expiration_datetime() is not None


def _swap(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


REJECTED = {
    "chain-id-line": _swap(FULL, "Version: 1\n", "Version: 1\nChain ID: 1\n"),
    "ethereum-header": _swap(FULL, "your key:", "your Ethereum account:"),
    "solana-header": _swap(FULL, "your key:", "your Solana account:"),
    "one-blank-line": _swap(NO_STATEMENT, "\n\n\nURI", "\n\nURI"),
    "empty-statement": _swap(FULL, "Sign in with your key.", ""),
    "no-nonce": _swap(FULL, "Nonce: Ab12Cd34Ef56\n", ""),
    "no-issued-at": _swap(FULL, "Issued At: 2027-01-15T08:00:00Z\n", ""),
    "version-2": _swap(FULL, "Version: 1", "Version: 2"),
    "did-web": _swap(FULL, ED.did, "did:web:example.com"),
    "did-key-multibase-u": _swap(FULL, ED.did, "did:key:u" + ED.did[9:]),
    "did-key-not-base58": _swap(FULL, ED.did, ED.did[:-1] + "0"),
    "did-key-too-long": _swap(FULL, ED.did, "did:key:z" + "2" * 200),
    "empty-resources": _swap(FULL, "\n- https://example.com/a", ""),
    "trailing-lf": FULL + "\n",
    "crlf": FULL.replace("\n", "\r\n"),
    "non-ascii": _swap(FULL, "your key.", "your kéy."),
}


@pytest.mark.parametrize("text", REJECTED.values(), ids=REJECTED.keys())
def test_parse_rejects(text: str) -> None:
    with pytest.raises(MalformedMessage):
        agent.parse(text)


@pytest.mark.parametrize(
    "change",
    [
        {"address": "did:pkh:eip155:1:0xabc"},
        {"version": "2"},
        {"statement": ""},
        {"nonce": "short"},
        {"uri": None},
        {"resources": ["https://example.com"]},
    ],
)
def test_construction_validates(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage):
        replace(agent.parse(FULL), **change)


# --- the family: accounts ---------------------------------------------------------------


def test_family_parse_names_the_did_account() -> None:
    _, account = FAMILY.parse(FULL)
    assert account == Account("did:key", "", ED.did, bytes(ED.key.verify_key), ED.did)
    assert account.id == ED.did
    assert account.caip2 == "did:key"
    assert FAMILY.parse(NO_STATEMENT)[1].public_key == SECP.public_key


def test_parse_account_accepts_both_key_types() -> None:
    assert parse_account(ED.did, ALLOWED).id == ED.did
    assert parse_account(SECP.did, ALLOWED).id == SECP.did
    assert ED.did.startswith("did:key:z6Mk")
    assert SECP.did.startswith("did:key:zQ3s")


def _did_holding(prefix: bytes, key: bytes) -> str:
    return "did:key:z" + encode_base58(prefix + key)


@pytest.mark.parametrize("form", ["uncompressed", "hybrid"])
def test_challenge_account_canonicalizes_long_secp256k1_keys(form: str) -> None:
    point = bytearray(SECP.key.public_key.format(compressed=False))
    if form == "hybrid":
        point[0] = 6 + (point[-1] & 1)
    account = parse_account(_did_holding(b"\xe7\x01", bytes(point)), ALLOWED)
    assert account.id == SECP.did
    assert account.public_key == SECP.public_key


def test_message_account_must_be_the_compressed_did() -> None:
    long_did = _did_holding(b"\xe7\x01", SECP.key.public_key.format(compressed=False))
    with pytest.raises(InvalidAccount):
        FAMILY.parse(_swap(NO_STATEMENT, SECP.did, long_did))


def _off_curve_point() -> bytes:
    x = 1
    while True:  # bounded: about half of all x are on the curve
        candidate = b"\x02" + x.to_bytes(32, "big")
        try:
            coincurve.PublicKey(candidate)
        except ValueError:
            return b"\x04" + x.to_bytes(32, "big") + (7).to_bytes(32, "big")
        x += 1


@pytest.mark.parametrize(
    ("did", "code"),
    [
        (_did_holding(b"\xe7\x01", _off_curve_point()), "invalid_public_key"),
        (_did_holding(b"\xe7\x01", b"\x07" + b"\x00" * 64), "invalid_public_key"),
        (_did_holding(b"\xe7\x01", b"\x05" + b"\x00" * 64), "invalid_public_key"),
        (_did_holding(b"\xed\x01", SMALL_ORDER), "invalid_public_key"),
        (_did_holding(b"\xed\x01", b"\xff" * 32), "invalid_public_key"),
        (_did_holding(b"\xec\x01", b"\x09" * 32), "unsupported_account"),
        ("did:key:zz", "invalid_account"),
        ("did:key", "invalid_account"),
        ("did:web:example.com", "unsupported_account"),
    ],
    ids=[
        "off-curve",
        "hybrid-zero",
        "bad-prefix",
        "small-order",
        "non-canonical",
        "x25519",
        "garbage",
        "bare",
        "did-web",
    ],
)
def test_parse_account_refuses(did: str, code: str) -> None:
    with pytest.raises(InvalidAccount) as refused:
        parse_account(did, ALLOWED | {"did:web"})
    assert refused.value.code == code


def test_did_key_not_configured_is_unsupported() -> None:
    with pytest.raises(InvalidAccount) as refused:
        parse_account(ED.did, frozenset({"eip155:1"}))
    assert refused.value.code == "unsupported_account"


def test_hybrid_key_with_wrong_parity_is_refused() -> None:
    point = bytearray(SECP.key.public_key.format(compressed=False))
    point[0] = 7 - (point[-1] & 1)
    with pytest.raises(InvalidAccount) as refused:
        parse_account(_did_holding(b"\xe7\x01", bytes(point)), ALLOWED)
    assert refused.value.code == "invalid_public_key"


def test_a_chain_is_refused_for_did_key() -> None:
    with pytest.raises(InvalidAccount):
        FAMILY.account("1", ED.did)


def test_render_has_no_chain_id_line() -> None:
    challenge = ChallengeText(
        account=FAMILY.account("", SECP.did),
        domain="example.com",
        uri="https://example.com/login",
        statement=None,
        nonce="0123456789abcdef",
        issued_at="2027-01-15T08:00:00Z",
        expiration_time="2027-01-15T08:05:00Z",
        resources=(),
    )
    assert FAMILY.render(challenge) == (
        f"example.com wants you to sign in with your key:\n{SECP.did}\n\n\n"
        "URI: https://example.com/login\nVersion: 1\nNonce: 0123456789abcdef\n"
        "Issued At: 2027-01-15T08:00:00Z\nExpiration Time: 2027-01-15T08:05:00Z"
    )


# --- signatures ------------------------------------------------------------------------


@pytest.mark.parametrize("wallet", [ED, SECP], ids=["ed25519", "secp256k1"])
def test_verify_accepts_the_key_signature(wallet: Any) -> None:
    text = text_for(wallet.did)
    FAMILY.verify(FAMILY.parse(text)[1], text.encode(), wallet.sign(text))


@pytest.mark.parametrize("kind", ["ed25519", "secp256k1"])
def test_verify_refuses_a_different_key_than_the_did(kind: str) -> None:
    wallet, other = (
        (ED, AgentEd25519Wallet.create())
        if kind == "ed25519"
        else (SECP, AgentSecp256k1Wallet.create())
    )
    text = text_for(wallet.did)
    with pytest.raises(SignatureInvalid):
        FAMILY.verify(FAMILY.parse(text)[1], text.encode(), other.sign(text))


def test_ed25519_signature_over_a_secp256k1_challenge_is_invalid() -> None:
    text = text_for(SECP.did)
    with pytest.raises(SignatureInvalid):
        FAMILY.verify(FAMILY.parse(text)[1], text.encode(), ED.sign(text))


def test_secp256k1_high_s_is_refused() -> None:
    text = text_for(SECP.did)
    raw = SECP.sign_bytes(text.encode())
    order = coincurve.utils.GROUP_ORDER_INT
    high = raw[:32] + (order - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    with pytest.raises(SignatureInvalid):
        FAMILY.verify(FAMILY.parse(text)[1], text.encode(), encode_base64url(high))


@pytest.mark.parametrize("wallet", [ED, SECP], ids=["ed25519", "secp256k1"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "hex"])
def test_signature_over_another_encoding_is_invalid(wallet: Any, encoding: str) -> None:
    text = text_for(wallet.did)
    data = text.encode().hex().encode() if encoding == "hex" else text.encode(encoding)
    with pytest.raises(SignatureInvalid):
        FAMILY.verify(
            FAMILY.parse(text)[1], text.encode(), encode_base64url(wallet.sign_bytes(data))
        )


def test_verify_refuses_other_wire_encodings() -> None:
    text = text_for(ED.did)
    raw = ED.sign_bytes(text.encode())
    account = FAMILY.parse(text)[1]
    solana = SolanaWallet(ED.key).sign(text)
    for signature in (solana, "0x" + raw.hex(), ED.sign(text) + "==", encode_base64url(raw[:63])):
        with pytest.raises(MalformedSignature):
            FAMILY.verify(account, text.encode(), signature)


# --- properties ------------------------------------------------------------------------

ed_dids = st.binary(min_size=32, max_size=32).map(lambda seed: AgentEd25519Wallet.create(seed).did)
secp_dids = st.integers(1, 2**64).map(
    lambda n: AgentSecp256k1Wallet.create(n.to_bytes(32, "big")).did
)
agent_messages = st.builds(
    AgentMessage,
    scheme=st.none() | st.sampled_from(["https", "http"]),
    domain=authorities,
    address=ed_dids | secp_dids,
    statement=st.none() | statements,
    uri=uris,
    nonce=nonces,
    issued_at=times,
    expiration_time=st.none() | times,
    not_before=st.none() | times,
    request_id=st.none() | segments,
    resources=st.lists(uris, max_size=4).map(tuple),
)


@FAST
@given(agent_messages)
def test_generated_messages_round_trip(message: AgentMessage) -> None:
    assert_round_trips(message, agent.parse)
    assert FAMILY.parse(message.to_text())[1].id == message.address


def _parse_or_keyproof_error(text: str) -> None:
    parse_or_keyproof_error(text, agent.parse, FAMILY.parse)


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text_raises_only_keyproof_errors(text: str) -> None:
    _parse_or_keyproof_error(text)


@FAST
@given(st.text(max_size=80), st.sampled_from(FULL.split("\n")))
def test_lines_with_arbitrary_values_raise_only_keyproof_errors(value: str, line: str) -> None:
    _parse_or_keyproof_error(with_value(FULL, line, value))


@FAST
@given(st.text(max_size=200) | st.text(max_size=120).map(lambda s: "did:key:z" + s))
def test_did_key_account_parsing_raises_only_keyproof_errors(text: str) -> None:
    with contextlib.suppress(KeyproofError):
        parse_account(text, ALLOWED)


@FAST
@given(st.binary(max_size=80), st.sampled_from([b"", b"\xe7\x01", b"\xed\x01", b"\xe7\x01\x04"]))
def test_did_key_of_arbitrary_bytes_raises_only_keyproof_errors(
    payload: bytes, prefix: bytes
) -> None:
    did = "did:key:z" + encode_base58(prefix + payload) if prefix + payload else "did:key:z"
    with contextlib.suppress(KeyproofError):
        account = parse_account(did, ALLOWED)
        assert parse_account(account.id, ALLOWED) == account  # canonical form is a fixed point


@FAST
@given(st.binary(min_size=32, max_size=32))
def test_did_key_accounts_round_trip(seed: bytes) -> None:
    did = encode_did_key("ed25519", bytes(AgentEd25519Wallet.create(seed).key.verify_key))
    assert parse_account(did, ALLOWED).id == did


# --- the worked examples in specs/protocol.md ------------------------------------------


@pytest.mark.parametrize(
    ("heading", "wallet_type"),
    [
        ("Worked example: did:key ed25519", AgentEd25519Wallet),
        ("Worked example: did:key secp256k1", AgentSecp256k1Wallet),
    ],
    ids=["ed25519", "secp256k1"],
)
def test_worked_examples_in_the_spec(heading: str, wallet_type: Any) -> None:
    example = spec_example(heading)
    wallet = wallet_type.create(bytes.fromhex(example["secret"]))
    account = parse_account(wallet.did, ALLOWED)
    assert account.id == example["account"]
    assert FAMILY.render(example_challenge(account)) == example["message"]
    assert wallet.sign(example["message"]) == example["signature"]
    _, parsed = FAMILY.parse(example["message"])
    FAMILY.verify(parsed, example["message"].encode(), example["signature"])
