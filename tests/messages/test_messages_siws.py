"""Sign In With Solana: strict parsing, exact rendering, the Solana family."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyproof.accounts import Account, ChallengeText, parse_account
from keyproof.errors import (
    InvalidAccount,
    KeyproofError,
    MalformedMessage,
    MalformedSignature,
    SignatureInvalid,
)
from keyproof.messages import siws
from keyproof.messages.siws import FAMILY, SiwsMessage

from helpers import (
    FAST,
    assert_round_trips,
    authorities,
    example_challenge,
    mutated,
    nonces,
    parse_or_keyproof_error,
    segments,
    spec_example,
    statements,
    times,
    uris,
    with_value,
)
from wallets import SolanaWallet

MAINNET = siws.CHAIN_REFERENCES["mainnet"]
DEVNET = siws.CHAIN_REFERENCES["devnet"]
ADDRESS = SolanaWallet.create(bytes(range(32))).address
SMALL_ORDER = bytes([1] + [0] * 31)  # the identity point, y = 1

# The "Maximal Message Template" of the SIWS specification, filled in.
FULL = f"""\
app.example.com:8443 wants you to sign in with your Solana account:
{ADDRESS}

Sign in to the escrow desk.

URI: https://app.example.com/login
Version: 1
Chain ID: mainnet
Nonce: Ab12Cd34Ef56
Issued At: 2027-01-15T08:00:00.123Z
Expiration Time: 2027-01-15T08:05:00+01:00
Not Before: 2027-01-15T07:59:00Z
Request ID: req-42
Resources:
- https://example.com
- https://phantom.app/"""

# No statement: the fields follow the address after ONE blank line.
NO_STATEMENT = f"""\
example.com wants you to sign in with your Solana account:
{ADDRESS}

URI: https://example.com/login
Version: 1
Chain ID: solana:devnet
Nonce: oBbLoEldZs
Issued At: 2027-01-15T08:00:00Z
Expiration Time: 2027-01-15T08:05:00Z"""

MINIMAL = f"example.com wants you to sign in with your Solana account:\n{ADDRESS}"
STATEMENT_ONLY = MINIMAL + "\n\nHello."
ONE_FIELD = MINIMAL + "\n\nNonce: 12345678"


@pytest.mark.parametrize(
    "text",
    [FULL, NO_STATEMENT, MINIMAL, STATEMENT_ONLY, ONE_FIELD],
    ids=["full", "no-statement", "minimal", "statement-only", "one-field"],
)
def test_valid_messages_round_trip_byte_for_byte(text: str) -> None:
    assert siws.parse(text).to_text() == text


def test_full_message_fields() -> None:
    message = siws.parse(FULL)
    assert message.domain == "app.example.com:8443"
    assert message.address == ADDRESS
    assert message.statement == "Sign in to the escrow desk."
    assert message.chain_id == "mainnet"
    assert message.request_id == "req-42"
    assert message.resources == ("https://example.com", "https://phantom.app/")
    assert message.issued_at_datetime() == datetime(2027, 1, 15, 8, 0, 0, 123000, tzinfo=UTC)
    assert message.expiration_datetime() == datetime(2027, 1, 15, 7, 5, tzinfo=UTC)
    assert message.not_before_datetime() == datetime(2027, 1, 15, 7, 59, tzinfo=UTC)


def test_minimal_message_has_only_domain_and_address() -> None:
    message = siws.parse(MINIMAL)
    assert (message.domain, message.address) == ("example.com", ADDRESS)
    assert message.statement is message.uri is message.nonce is message.issued_at is None
    assert message.resources == ()


def test_statement_only_and_field_only_messages_are_told_apart() -> None:
    assert siws.parse(STATEMENT_ONLY).statement == "Hello."
    assert siws.parse(STATEMENT_ONLY).nonce is None
    assert siws.parse(ONE_FIELD).statement is None
    assert siws.parse(ONE_FIELD).nonce == "12345678"


def test_constructed_message_renders_the_wallet_standard_layout() -> None:
    message = SiwsMessage(
        domain="example.com",
        address=ADDRESS,
        uri="https://example.com/login",
        version="1",
        chain_id="solana:devnet",
        nonce="oBbLoEldZs",
        issued_at="2027-01-15T08:00:00Z",
        expiration_time="2027-01-15T08:05:00Z",
    )
    assert message.to_text() == NO_STATEMENT


def _swap(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


REJECTED = {
    "siwe-two-blank-lines": _swap(NO_STATEMENT, f"{ADDRESS}\n", f"{ADDRESS}\n\n"),
    "no-blank-after-address": _swap(NO_STATEMENT, f"{ADDRESS}\n\n", f"{ADDRESS}\n"),
    "no-blank-after-statement": _swap(FULL, "desk.\n\n", "desk.\n"),
    "empty-statement": MINIMAL + "\n\n",
    "blank-then-nothing": MINIMAL + "\n",
    "scheme-in-header": "https://" + FULL,
    "ethereum-header": _swap(FULL, "Solana account", "Ethereum account"),
    "version-2": _swap(FULL, "Version: 1", "Version: 2"),
    "chain-mainnet-beta": _swap(FULL, "Chain ID: mainnet", "Chain ID: mainnet-beta"),
    "chain-caip2": _swap(FULL, "Chain ID: mainnet", f"Chain ID: solana:{MAINNET}"),
    "chain-solana-localnet": _swap(FULL, "Chain ID: mainnet", "Chain ID: solana:localnet"),
    "chain-upper": _swap(FULL, "Chain ID: mainnet", "Chain ID: Mainnet"),
    "fields-out-of-order": _swap(
        FULL, "Version: 1\nChain ID: mainnet", "Chain ID: mainnet\nVersion: 1"
    ),
    "duplicate-nonce": _swap(
        FULL, "Nonce: Ab12Cd34Ef56", "Nonce: Ab12Cd34Ef56\nNonce: Ab12Cd34Ef56"
    ),
    "unknown-field": _swap(FULL, "Request ID: req-42", "Request ID: req-42\nComment: hi"),
    "empty-resources": _swap(FULL, "\n- https://example.com\n- https://phantom.app/", ""),
    "resource-no-dash": _swap(FULL, "- https://phantom.app/", "https://phantom.app/"),
    "short-nonce": _swap(FULL, "Ab12Cd34Ef56", "Ab12"),
    "nonce-symbol": _swap(FULL, "Ab12Cd34Ef56", "Ab12Cd34Ef5!"),
    "not-rfc3339": _swap(FULL, "2027-01-15T08:00:00.123Z", "2027-01-15 08:00:00Z"),
    "bad-uri": _swap(FULL, "https://app.example.com/login", "not a uri"),
    "trailing-lf": FULL + "\n",
    "crlf": FULL.replace("\n", "\r\n"),
    "non-ascii": _swap(FULL, "escrow desk", "escrow désk"),
    "address-31-chars": _swap(MINIMAL, ADDRESS, "2" * 31),
    "address-45-chars": _swap(MINIMAL, ADDRESS, "2" * 45),
    "address-not-base58": _swap(MINIMAL, ADDRESS, "0" + ADDRESS[1:]),
    "address-33-bytes": _swap(MINIMAL, ADDRESS, base58.b58encode(b"\x05" * 33).decode()),
    "address-extra-leading-one": _swap(MINIMAL, ADDRESS, "1" + ADDRESS),
    "address-hex": _swap(MINIMAL, ADDRESS, "0x" + "ab" * 32),
    "statement-like-a-field": MINIMAL + "\n\nURI: https://x.example\n\nNonce: 12345678",
}


@pytest.mark.parametrize("text", REJECTED.values(), ids=REJECTED.keys())
def test_parse_rejects(text: str) -> None:
    with pytest.raises(MalformedMessage) as refused:
        siws.parse(text)
    assert refused.value.code in {"malformed_message", "message_too_long"}
    assert refused.value.status == 400


def test_every_cluster_name_of_the_abnf_parses() -> None:
    for chain_id in sorted(siws.CHAIN_IDS):
        assert (
            siws.parse(_swap(FULL, "Chain ID: mainnet", f"Chain ID: {chain_id}")).chain_id
            == chain_id
        )


@pytest.mark.parametrize(
    "change",
    [
        {"statement": "URI: https://x.example"},
        {"statement": "Resources:"},
        {"statement": ""},
        {"chain_id": "mainnet-beta"},
        {"version": "2"},
        {"address": "1" * 44},
        {"nonce": 12345678},
        {"resources": ["https://example.com"]},
        {"resources": ("https://example.com",) * 65},
    ],
)
def test_construction_validates(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage):
        replace(siws.parse(FULL), **change)


def test_oversized_message_is_message_too_long() -> None:
    with pytest.raises(MalformedMessage) as refused:
        siws.parse(FULL + "\n- https://example.com/" + "a" * 9000)
    assert refused.value.code == "message_too_long"


# --- what keyproof requires on redeem --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        (MINIMAL, "uri"),
        (STATEMENT_ONLY, "uri"),
        (_swap(NO_STATEMENT, "Nonce: oBbLoEldZs\n", ""), "nonce"),
        (_swap(NO_STATEMENT, "Issued At: 2027-01-15T08:00:00Z\n", ""), "issued at"),
        (_swap(NO_STATEMENT, "\nExpiration Time: 2027-01-15T08:05:00Z", ""), "expiration time"),
        (_swap(NO_STATEMENT, "Chain ID: solana:devnet\n", ""), "chain id"),
        (_swap(NO_STATEMENT, "Version: 1\n", ""), "version"),
    ],
    ids=[
        "minimal",
        "statement-only",
        "no-nonce",
        "no-issued-at",
        "no-expiry",
        "no-chain",
        "no-version",
    ],
)
def test_siws_minimal_message_without_nonce_or_issued_at_is_refused(
    text: str, missing: str
) -> None:
    siws.parse(text)  # valid SIWS ...
    with pytest.raises(MalformedMessage) as refused:
        FAMILY.parse(text)  # ... but not a keyproof challenge
    assert str(refused.value).startswith(f"{missing}:")


def test_family_parse_maps_the_cluster_to_its_caip2_reference() -> None:
    signed, account = FAMILY.parse(NO_STATEMENT)
    key = base58.b58decode(ADDRESS)
    assert account == Account("solana", DEVNET, ADDRESS, key, f"solana:{DEVNET}:{ADDRESS}")
    assert account.id == f"solana:{DEVNET}:{ADDRESS}"
    assert account.caip2 == f"solana:{DEVNET}"
    assert signed.nonce == "oBbLoEldZs"
    assert signed.issued_at_datetime() == datetime(2027, 1, 15, 8, tzinfo=UTC)
    assert signed.to_text() == NO_STATEMENT


def test_family_parse_refuses_localnet() -> None:
    with pytest.raises(InvalidAccount) as refused:
        FAMILY.parse(_swap(NO_STATEMENT, "solana:devnet", "localnet"))
    assert refused.value.code == "unsupported_account"


def test_family_parse_refuses_small_order_address() -> None:
    small = base58.b58encode(SMALL_ORDER).decode()
    with pytest.raises(InvalidAccount) as refused:
        FAMILY.parse(_swap(NO_STATEMENT, ADDRESS, small))
    assert refused.value.code == "invalid_public_key"


# --- accounts --------------------------------------------------------------------------


def test_account_accepts_a_cluster_name_for_its_reference() -> None:
    assert FAMILY.account("mainnet", ADDRESS) == FAMILY.account(MAINNET, ADDRESS)
    assert FAMILY.account("devnet", ADDRESS).chain == DEVNET


@pytest.mark.parametrize(
    ("chain", "address", "code"),
    [
        ("localnet", ADDRESS, "unsupported_account"),
        ("mainnet-beta", ADDRESS, "unsupported_account"),
        (MAINNET.lower(), ADDRESS, "unsupported_account"),
        (MAINNET, ADDRESS[:-1], "invalid_account"),
        (MAINNET, "1" + ADDRESS, "invalid_account"),
        (MAINNET, "0x" + "ab" * 32, "invalid_account"),
        (MAINNET, base58.b58encode(SMALL_ORDER).decode(), "invalid_public_key"),
        (MAINNET, base58.b58encode(b"\xff" * 32).decode(), "invalid_public_key"),
    ],
)
def test_account_refuses(chain: str, address: str, code: str) -> None:
    with pytest.raises(InvalidAccount) as refused:
        FAMILY.account(chain, address)
    assert refused.value.code == code


def test_render_writes_the_cluster_name_and_every_required_field() -> None:
    wallet = SolanaWallet.create(bytes(range(32)))
    challenge = ChallengeText(
        account=FAMILY.account(MAINNET, wallet.address),
        domain="example.com",
        uri="https://example.com/login",
        statement=None,
        nonce="0123456789abcdef",
        issued_at="2027-01-15T08:00:00Z",
        expiration_time="2027-01-15T08:05:00Z",
        resources=(),
    )
    text = FAMILY.render(challenge)
    assert text == (
        f"example.com wants you to sign in with your Solana account:\n{wallet.address}\n\n"
        "URI: https://example.com/login\nVersion: 1\nChain ID: mainnet\n"
        "Nonce: 0123456789abcdef\nIssued At: 2027-01-15T08:00:00Z\n"
        "Expiration Time: 2027-01-15T08:05:00Z"
    )
    assert FAMILY.parse(text)[1] == challenge.account


# --- signatures ------------------------------------------------------------------------


def test_verify_accepts_the_wallet_signature() -> None:
    wallet = SolanaWallet.create(bytes(range(32)))
    _, account = FAMILY.parse(FULL)
    FAMILY.verify(account, FULL.encode(), wallet.sign(FULL))


def test_verify_refuses_a_different_key_than_the_address() -> None:
    _, account = FAMILY.parse(FULL)
    with pytest.raises(SignatureInvalid):
        FAMILY.verify(account, FULL.encode(), SolanaWallet.create().sign(FULL))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "hex"])
def test_verify_refuses_a_signature_over_another_encoding(encoding: str) -> None:
    wallet = SolanaWallet.create(bytes(range(32)))
    data = FULL.encode().hex().encode() if encoding == "hex" else FULL.encode(encoding)
    signature = base58.b58encode(wallet.sign_bytes(data)).decode()
    _, account = FAMILY.parse(FULL)
    with pytest.raises(SignatureInvalid):
        FAMILY.verify(account, FULL.encode(), signature)


def test_verify_refuses_wrong_wire_encodings() -> None:
    wallet = SolanaWallet.create(bytes(range(32)))
    raw = wallet.sign_bytes(FULL.encode())
    _, account = FAMILY.parse(FULL)
    for signature in (
        "0x" + raw.hex(),
        raw.hex(),
        base58.b58encode(raw[:63]).decode(),
        "1" + wallet.sign(FULL),
    ):
        with pytest.raises(MalformedSignature):
            FAMILY.verify(account, FULL.encode(), signature)


# --- properties ------------------------------------------------------------------------

solana_addresses = st.binary(min_size=32, max_size=32).map(lambda b: base58.b58encode(b).decode())
siws_messages = st.builds(
    SiwsMessage,
    domain=authorities,
    address=solana_addresses,
    statement=st.none() | statements.filter(lambda s: not siws._starts_a_field(s)),
    uri=st.none() | uris,
    version=st.none() | st.just("1"),
    chain_id=st.none() | st.sampled_from(sorted(siws.CHAIN_IDS)),
    nonce=st.none() | nonces,
    issued_at=st.none() | times,
    expiration_time=st.none() | times,
    not_before=st.none() | times,
    request_id=st.none() | segments,
    resources=st.lists(uris, max_size=4).map(tuple),
)


@FAST
@given(siws_messages)
def test_generated_messages_round_trip(message: SiwsMessage) -> None:
    assert_round_trips(message, siws.parse)


def _parse_or_keyproof_error(text: str) -> None:
    parse_or_keyproof_error(text, siws.parse, FAMILY.parse)


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text_raises_only_keyproof_errors(text: str) -> None:
    _parse_or_keyproof_error(text)


@FAST
@given(st.text(max_size=80), st.sampled_from(FULL.split("\n")))
def test_lines_with_arbitrary_values_raise_only_keyproof_errors(value: str, line: str) -> None:
    _parse_or_keyproof_error(with_value(FULL, line, value))


mutated_messages = mutated(
    [FULL, NO_STATEMENT, MINIMAL, STATEMENT_ONLY],
    ["delete", "duplicate", "swap", "blank", "insert", "cut"],
)


@FAST
@given(mutated_messages)
def test_mutated_messages_raise_only_keyproof_errors(text: str) -> None:
    _parse_or_keyproof_error(text)


@FAST
@given(siws_messages)
def test_a_parsed_message_always_renders_back_to_its_text(message: SiwsMessage) -> None:
    # Parsing is the inverse of rendering in both directions: no second spelling.
    text = message.to_text()
    assert siws.parse(siws.parse(text).to_text()) == message


# --- the worked example in specs/protocol.md -------------------------------------------


def test_worked_example_in_the_spec() -> None:
    example = spec_example("Worked example: Solana")
    wallet = SolanaWallet.create(bytes.fromhex(example["secret"]))
    account = parse_account(wallet.caip10(), frozenset({f"solana:{MAINNET}"}))
    assert account.id == example["account"]
    assert FAMILY.render(example_challenge(account)) == example["message"]
    assert wallet.sign(example["message"]) == example["signature"]
    _, parsed = FAMILY.parse(example["message"])
    FAMILY.verify(parsed, example["message"].encode(), example["signature"])


SOLANA_CHAINS = frozenset(f"solana:{ref}" for ref in siws.CHAIN_REFERENCES.values())


@FAST
@given(
    st.text(max_size=120).map(lambda s: f"solana:{MAINNET}:{s}")
    | st.builds(lambda c, a: f"solana:{c}:{a}", st.text(max_size=40), solana_addresses)
)
def test_solana_account_parsing_raises_only_keyproof_errors(text: str) -> None:
    with contextlib.suppress(KeyproofError):
        account = parse_account(text, SOLANA_CHAINS)
        assert parse_account(account.id, SOLANA_CHAINS) == account


@FAST
@given(st.binary(min_size=32, max_size=32), st.sampled_from(sorted(siws.CHAIN_REFERENCES)))
def test_solana_accounts_round_trip(seed: bytes, cluster: str) -> None:
    wallet = SolanaWallet.create(seed)
    account = parse_account(f"solana:{cluster}:{wallet.address}", SOLANA_CHAINS)
    assert account.id == wallet.caip10(siws.CHAIN_REFERENCES[cluster])
    assert parse_account(account.id, SOLANA_CHAINS) == account
