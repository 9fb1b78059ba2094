"""Sign-In with Ethereum (ERC-4361): strict parsing, rendering and verification."""

from __future__ import annotations

import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from keyproof.accounts import parse_account
from keyproof.crypto.secp256k1 import CURVE_ORDER
from keyproof.errors import (
    BindingMismatch,
    KeyproofError,
    MalformedMessage,
    MalformedSignature,
    NonceRejected,
    OutsideValidity,
    SignatureInvalid,
)
from keyproof.messages import _fields as f
from keyproof.messages import siwe
from keyproof.messages.siwe import SiweMessage

from helpers import (
    ALNUM,
    FAST,
    PCHAR,
    STATEMENT_ALPHABET,
    SUB_DELIMS,
    UNRESERVED,
    assert_round_trips,
    example_challenge,
    labels,
    mutated,
    parse_or_keyproof_error,
    spec_example,
    with_value,
)

# ERC-4361 "Examples" (ethereum/ERCs, ERCS/erc-4361.md): implicit scheme, explicit port,
# explicit scheme.
ERC_EXAMPLE = """\
example.com wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

I accept the ExampleOrg Terms of Service: https://example.com/tos

URI: https://example.com/login
Version: 1
Chain ID: 1
Nonce: 32891756
Issued At: 2021-09-30T16:25:24Z
Resources:
- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/
- https://example.com/my-web2-claim.json"""
ERC_EXAMPLE_PORT = ERC_EXAMPLE.replace("example.com wants", "example.com:3388 wants", 1)
ERC_EXAMPLE_SCHEME = "https://" + ERC_EXAMPLE

# Every optional field present, in order.
FULL = """\
https://app.example.com:8443 wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

Sign in to the escrow desk.

URI: https://app.example.com/login
Version: 1
Chain ID: 137
Nonce: Ab12Cd34Ef56
Issued At: 2027-01-15T08:00:00.123Z
Expiration Time: 2027-01-15T08:05:00+01:00
Not Before: 2027-01-15T07:59:00Z
Request ID: req-42
Resources:
- https://api.example.com/escrow"""

# No statement: address LF LF LF "URI: " (the ABNF's two blank lines).
NO_STATEMENT = """\
example.com wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2


URI: https://example.com/login
Version: 1
Chain ID: 1
Nonce: 32891756
Issued At: 2021-09-30T16:25:24Z"""


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(ERC_EXAMPLE, id="erc-implicit-scheme"),
        pytest.param(ERC_EXAMPLE_PORT, id="erc-explicit-port"),
        pytest.param(ERC_EXAMPLE_SCHEME, id="erc-explicit-scheme"),
        pytest.param(FULL, id="every-optional-field"),
        pytest.param(NO_STATEMENT, id="no-statement"),
    ],
)
def test_valid_messages_round_trip_byte_for_byte(text: str) -> None:
    assert siwe.parse(text).to_text() == text


def test_erc_example_fields() -> None:
    message = siwe.parse(ERC_EXAMPLE_SCHEME)
    assert message == SiweMessage(
        scheme="https",
        domain="example.com",
        address="0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
        statement="I accept the ExampleOrg Terms of Service: https://example.com/tos",
        uri="https://example.com/login",
        version="1",
        chain_id=1,
        nonce="32891756",
        issued_at="2021-09-30T16:25:24Z",
        resources=(
            "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
            "https://example.com/my-web2-claim.json",
        ),
    )
    assert siwe.parse(ERC_EXAMPLE).scheme is None
    assert siwe.parse(ERC_EXAMPLE_PORT).domain == "example.com:3388"


def test_full_message_fields_and_times() -> None:
    message = siwe.parse(FULL)
    assert (message.scheme, message.domain, message.chain_id) == (
        "https",
        "app.example.com:8443",
        137,
    )
    assert message.request_id == "req-42"
    assert message.resources == ("https://api.example.com/escrow",)
    assert message.issued_at == "2027-01-15T08:00:00.123Z"
    assert message.issued_at_datetime() == datetime(2027, 1, 15, 8, 0, 0, 123000, tzinfo=UTC)
    assert message.expiration_datetime() == datetime(2027, 1, 15, 7, 5, tzinfo=UTC)
    assert message.not_before_datetime() == datetime(2027, 1, 15, 7, 59, tzinfo=UTC)


def test_absent_optional_fields_are_none() -> None:
    message = siwe.parse(NO_STATEMENT)
    assert message.statement is None
    assert message.expiration_datetime() is None
    assert message.not_before_datetime() is None
    assert (message.request_id, message.resources) == (None, ())


def test_empty_request_id_is_kept() -> None:
    text = NO_STATEMENT + "\nRequest ID: "
    message = siwe.parse(text)
    assert message.request_id == ""
    assert message.to_text() == text


# --- strictness: one named case per rule -----------------------------------------------


def _swap(old: str, new: str, text: str = FULL) -> str:
    assert old in text
    return text.replace(old, new, 1)


LINES = FULL.split("\n")
INVALID = {
    # envelope
    "crlf-line-endings": FULL.replace("\n", "\r\n"),
    "cr-in-one-line": _swap("Version: 1\n", "Version: 1\r\n"),
    "trailing-lf": FULL + "\n",
    "leading-lf": "\n" + FULL,
    "trailing-space": FULL + " ",
    "non-ascii": _swap("escrow desk", "escrow désk"),
    "nul-byte": _swap("Version: 1", "Version: 1\x00"),
    "empty": "",
    # header, scheme, domain
    "header-other-chain": _swap("Ethereum account", "Solana account"),
    "header-lowercase": _swap("Ethereum account", "ethereum account"),
    "header-missing-colon": _swap("Ethereum account:", "Ethereum account"),
    "header-double-space": _swap(" wants you", "  wants you"),
    "domain-empty": _swap("https://app.example.com:8443 wants", "https:// wants"),
    "domain-missing": _swap("https://app.example.com:8443 wants", " wants"),
    "domain-with-path": _swap("app.example.com:8443 wants", "app.example.com/x wants"),
    "domain-with-space": _swap("app.example.com:8443 wants", "app example.com wants"),
    "domain-port-too-big": _swap(":8443 wants", ":70000 wants"),
    "scheme-empty": _swap("https://app", "://app"),
    "scheme-leading-digit": _swap("https://app", "1https://app"),
    "scheme-twice": _swap("https://app", "https://https://app"),
    # address
    "address-lowercase": _swap(
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
    ),
    "address-uppercase": _swap(
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "0xC02AAA39B223FE8D0A0E5C4F27EAD9083C756CC2"
    ),
    "address-bad-checksum": _swap(
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756cC2"
    ),
    "address-uppercase-0x": _swap("0xC02aaA", "0XC02aaA"),
    "address-short": _swap("756Cc2\n", "756Cc\n"),
    "address-long": _swap("756Cc2\n", "756Cc22\n"),
    "address-no-prefix": _swap("0xC02aaA", "C02aaA"),
    "address-not-hex": _swap("0xC02aaA", "0xG02aaA"),
    "address-ens-name": _swap("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "vitalik.eth"),
    # blank lines and statement
    "no-blank-line-after-address": _swap("Cc2\n\nSign", "Cc2\nSign"),
    "extra-blank-line-before-statement": _swap("Cc2\n\nSign", "Cc2\n\n\nSign"),
    "no-blank-line-after-statement": _swap("desk.\n\nURI", "desk.\nURI"),
    "extra-blank-line-after-statement": _swap("desk.\n\nURI", "desk.\n\n\nURI"),
    "no-statement-single-blank-line": NO_STATEMENT.replace("\n\n\nURI", "\n\nURI"),
    "empty-statement": NO_STATEMENT.replace("\n\n\nURI", "\n\n\n\nURI"),
    "statement-on-two-lines": _swap("Sign in to the escrow desk.", "Sign in\nto the escrow desk."),
    "statement-double-quote": _swap("escrow desk", 'escrow "desk"'),
    "statement-percent": _swap("escrow desk", "escrow 100% desk"),
    "statement-tab": _swap("escrow desk", "escrow\tdesk"),
    "statement-too-long": _swap("Sign in to the escrow desk.", "a" * (f.MAX_STATEMENT + 1)),
    # uri, version, chain id, nonce
    "uri-missing": _swap("URI: https://app.example.com/login\n", ""),
    "uri-relative": _swap("URI: https://app.example.com/login", "URI: /login"),
    "uri-with-space": _swap(
        "URI: https://app.example.com/login", "URI: https://app.example.com/lo gin"
    ),
    "uri-label-lowercase": _swap("URI: ", "uri: "),
    "uri-label-no-space": _swap("URI: ", "URI:"),
    "uri-label-two-spaces": _swap("URI: ", "URI:  "),
    "version-2": _swap("Version: 1", "Version: 2"),
    "version-1.0": _swap("Version: 1", "Version: 1.0"),
    "version-missing": _swap("Version: 1\n", ""),
    "chain-id-zero": _swap("Chain ID: 137", "Chain ID: 0"),
    "chain-id-leading-zero": _swap("Chain ID: 137", "Chain ID: 0137"),
    "chain-id-hex": _swap("Chain ID: 137", "Chain ID: 0x89"),
    "chain-id-caip2": _swap("Chain ID: 137", "Chain ID: eip155:137"),
    "chain-id-empty": _swap("Chain ID: 137", "Chain ID: "),
    "chain-id-huge": _swap("Chain ID: 137", "Chain ID: " + "9" * 30),
    "nonce-short": _swap("Nonce: Ab12Cd34Ef56", "Nonce: Ab12Cd3"),
    "nonce-punctuation": _swap("Nonce: Ab12Cd34Ef56", "Nonce: Ab12-Cd34Ef56"),
    "nonce-too-long": _swap("Nonce: Ab12Cd34Ef56", "Nonce: " + "a" * 129),
    "nonce-missing": _swap("Nonce: Ab12Cd34Ef56\n", ""),
    # times
    "issued-at-missing": _swap("Issued At: 2027-01-15T08:00:00.123Z\n", ""),
    "issued-at-no-offset": _swap("08:00:00.123Z", "08:00:00.123"),
    "issued-at-leap-second": _swap("08:00:00.123Z", "23:59:60Z"),
    "issued-at-feb-30": _swap("Issued At: 2027-01-15", "Issued At: 2027-02-30"),
    "issued-at-unix-time": _swap("2027-01-15T08:00:00.123Z", "1800000000"),
    "expiration-feb-29-common-year": _swap(
        "Expiration Time: 2027-01-15", "Expiration Time: 2027-02-29"
    ),
    "not-before-lowercase-z": _swap("07:59:00Z", "07:59:00z"),
    # order, duplicates, unknown lines
    "not-before-before-expiration": "\n".join([*LINES[:10], LINES[11], LINES[10], *LINES[12:]]),
    "chain-id-before-version": "\n".join([*LINES[:6], LINES[7], LINES[6], *LINES[8:]]),
    "duplicate-nonce": _swap("Nonce: Ab12Cd34Ef56", "Nonce: Ab12Cd34Ef56\nNonce: Ab12Cd34Ef56"),
    "duplicate-expiration": _swap(
        "Not Before:", "Expiration Time: 2027-01-15T08:05:00Z\nNot Before:"
    ),
    "unknown-field": _swap("Request ID: req-42", "Request ID: req-42\nFoo: bar"),
    "request-id-space": _swap("Request ID: req-42", "Request ID: req 42"),
    "request-id-slash": _swap("Request ID: req-42", "Request ID: req/42"),
    # resources
    "resources-empty-list": _swap("Resources:\n- https://api.example.com/escrow", "Resources:"),
    "resources-label-lowercase": _swap("Resources:", "resources:"),
    "resource-not-uri": _swap("- https://api.example.com/escrow", "- not a uri"),
    "resource-no-dash": _swap("- https://api.example.com/escrow", "https://api.example.com/escrow"),
    "resource-star-bullet": _swap("- https://api", "* https://api"),
    "resource-blank-line": FULL + "\n\n- https://b.example",
    "resources-too-many": FULL + "\n- https://b.example" * f.MAX_RESOURCES,
    "resources-before-request-id": "\n".join([*LINES[:12], *LINES[13:], LINES[12]]),
}


@pytest.mark.parametrize("text", INVALID.values(), ids=INVALID.keys())
def test_parse_rejects(text: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        siwe.parse(text)
    assert caught.value.code == "malformed_message"


def test_oversized_message_is_message_too_long() -> None:
    text = FULL + "\n- https://b.example/" + "a" * f.MAX_MESSAGE_BYTES
    with pytest.raises(MalformedMessage) as caught:
        siwe.parse(text)
    assert caught.value.code == "message_too_long"


def test_error_names_the_field() -> None:
    with pytest.raises(MalformedMessage, match="nonce"):
        siwe.parse(INVALID["nonce-short"])
    with pytest.raises(MalformedMessage, match="address"):
        siwe.parse(INVALID["address-lowercase"])


@pytest.mark.parametrize("value", [None, b"bytes", 42])
def test_parse_refuses_non_text(value: Any) -> None:
    with pytest.raises(MalformedMessage):
        siwe.parse(value)


# --- construction ----------------------------------------------------------------------

BASE: dict[str, Any] = {
    "domain": "example.com",
    "address": "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
    "uri": "https://example.com/login",
    "chain_id": 1,
    "nonce": "32891756",
    "issued_at": "2021-09-30T16:25:24Z",
}


def test_constructed_message_renders_the_erc_layout() -> None:
    message = SiweMessage(**BASE)
    assert message.to_text() == NO_STATEMENT
    assert siwe.parse(message.to_text()) == message


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"scheme": ""}, id="empty-scheme"),
        pytest.param({"domain": "exa mple.com"}, id="bad-domain"),
        pytest.param({"address": "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"}, id="lower-address"),
        pytest.param({"statement": ""}, id="empty-statement"),
        pytest.param({"statement": "two\nlines"}, id="statement-with-lf"),
        pytest.param({"uri": "login"}, id="relative-uri"),
        pytest.param({"version": "2"}, id="version-2"),
        pytest.param({"chain_id": 0}, id="chain-id-zero"),
        pytest.param({"chain_id": -1}, id="chain-id-negative"),
        pytest.param({"chain_id": True}, id="chain-id-bool"),
        pytest.param({"chain_id": "1"}, id="chain-id-text"),
        pytest.param({"nonce": "short"}, id="short-nonce"),
        pytest.param({"issued_at": "2021-09-30"}, id="date-only"),
        pytest.param({"expiration_time": "soon"}, id="bad-expiration"),
        pytest.param({"not_before": "2021-02-30T00:00:00Z"}, id="bad-not-before"),
        pytest.param({"request_id": "a b"}, id="bad-request-id"),
        pytest.param({"resources": ["https://a.example"]}, id="resources-list"),
        pytest.param({"resources": ("https://a.example", 3)}, id="resource-not-text"),
        pytest.param({"resources": ("nope",)}, id="resource-not-uri"),
        pytest.param({"domain": None}, id="domain-none"),
        pytest.param({"statement": 7}, id="statement-not-text"),
    ],
)
def test_construction_validates(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage):
        SiweMessage(**(BASE | change))


def test_construction_bounds_total_size() -> None:
    resources = tuple(f"https://example.com/{i:02d}/" + "a" * 200 for i in range(f.MAX_RESOURCES))
    with pytest.raises(MalformedMessage) as caught:
        SiweMessage(**BASE, resources=resources)
    assert caught.value.code == "message_too_long"


def test_replace_revalidates() -> None:
    message = SiweMessage(**BASE)
    with pytest.raises(MalformedMessage):
        replace(message, nonce="bad")


def test_message_is_immutable() -> None:
    message = SiweMessage(**BASE)
    with pytest.raises(AttributeError):
        message.nonce = "abcdefgh1"  # type: ignore[misc]


# --- property: generated valid messages round-trip -------------------------------------

reg_names = st.lists(labels, min_size=1, max_size=4).map(".".join)
hosts = st.one_of(
    reg_names,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a.compressed}]"),
    st.ip_addresses(v=6).map(lambda a: f"[{a.exploded}]"),
)
userinfos = st.text(alphabet=UNRESERVED + SUB_DELIMS + ":", max_size=10)
authorities = st.builds(
    lambda user, host, port: (
        (f"{user}@" if user is not None else "") + host + (f":{port}" if port is not None else "")
    ),
    st.none() | userinfos,
    hosts,
    st.none() | st.integers(1, 65535),
)
schemes = st.sampled_from(["https", "http", "wss", "ipfs"]) | st.from_regex(
    r"\A[a-zA-Z][a-zA-Z0-9+.-]{0,8}\Z"
)
pct_encoded = st.integers(0, 255).map(lambda b: f"%{b:02X}")
segments = st.lists(st.sampled_from(PCHAR) | pct_encoded, max_size=8).map("".join)
hierarchical_uris = st.builds(
    lambda scheme, authority, path, query: (
        f"{scheme}://{authority}"
        + "".join("/" + s for s in path)
        + ("" if query is None else "?" + query)
    ),
    schemes,
    authorities,
    st.lists(segments, max_size=3),
    st.none() | segments,
)
did_uris = st.text(alphabet=ALNUM, min_size=1, max_size=48).map(lambda s: f"did:key:z{s}")
uris = hierarchical_uris | did_uris
addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
fractions = st.none() | st.text(alphabet=string.digits, min_size=1, max_size=9)
offsets = st.just("Z") | st.builds(
    lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
    st.sampled_from("+-"),
    st.integers(0, 23),
    st.integers(0, 59),
)


def _rfc3339(moment: datetime, fraction: str | None, offset: str) -> str:
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
        + ("" if fraction is None else "." + fraction)
        + offset
    )


times = st.builds(
    _rfc3339,
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9000, 12, 31)),
    fractions,
    offsets,
)
messages = st.builds(
    SiweMessage,
    scheme=st.none() | schemes,
    domain=authorities,
    address=addresses,
    statement=st.none() | st.text(alphabet=STATEMENT_ALPHABET, min_size=1, max_size=120),
    uri=uris,
    chain_id=st.integers(1, f.MAX_CHAIN_ID),
    nonce=st.text(alphabet=ALNUM, min_size=8, max_size=128),
    issued_at=times,
    expiration_time=st.none() | times,
    not_before=st.none() | times,
    request_id=st.none() | segments,
    resources=st.lists(uris, max_size=6).map(tuple),
)


@FAST
@given(messages)
def test_generated_messages_round_trip(message: SiweMessage) -> None:
    assert_round_trips(message, siwe.parse)


# --- property: parse raises only keyproof errors ---------------------------------------


def _parse_or_keyproof_error(text: str) -> None:
    parse_or_keyproof_error(text, siwe.parse)


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text_raises_only_keyproof_errors(text: str) -> None:
    _parse_or_keyproof_error(text)


@FAST
@given(st.text(max_size=80), st.sampled_from(FULL.split("\n")))
def test_lines_with_arbitrary_values_raise_only_keyproof_errors(value: str, line: str) -> None:
    _parse_or_keyproof_error(with_value(FULL, line, value))


mutated_messages = mutated(
    [FULL, NO_STATEMENT, ERC_EXAMPLE_SCHEME],
    ["delete", "duplicate", "swap", "crlf", "trailing", "insert", "cut"],
)


@FAST
@given(mutated_messages)
def test_mutated_messages_raise_only_keyproof_errors(text: str) -> None:
    _parse_or_keyproof_error(text)


@FAST
@given(messages, st.sampled_from(["\r\n", "\n\n"]))
def test_line_break_damage_is_always_rejected(message: SiweMessage, damage: str) -> None:
    text = message.to_text()
    position = text.index("\nVersion: ")
    with pytest.raises(MalformedMessage):
        siwe.parse(text[:position] + damage + text[position + 1 :])
    with pytest.raises(MalformedMessage):
        siwe.parse(text + "\n")


# --- verify ----------------------------------------------------------------------------

ALICE = Account.from_key(
    bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
)
MALLORY = Account.from_key(
    bytes.fromhex("b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291")
)
ISSUED = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
NOW = ISSUED + timedelta(seconds=30)


def _signed_text(**change: Any) -> str:
    fields: dict[str, Any] = {
        "scheme": "https",
        "domain": "app.example.com",
        "address": ALICE.address,
        "statement": "Sign in to the escrow desk.",
        "uri": "https://app.example.com",
        "chain_id": 1,
        "nonce": "Ab12Cd34Ef56Gh78",
        "issued_at": "2027-01-15T08:00:00Z",
        "expiration_time": "2027-01-15T08:05:00Z",
        "not_before": "2027-01-15T08:00:00Z",
    }
    return SiweMessage(**(fields | change)).to_text()


def _sign(text: str, account: Any = ALICE) -> str:
    signed = account.sign_message(encode_defunct(text=text))
    return "0x" + bytes(signed.signature).hex()


def _verify(text: str, signature: str, **change: Any) -> SiweMessage:
    binding: dict[str, Any] = {"domain": "app.example.com", "nonce": "Ab12Cd34Ef56Gh78", "now": NOW}
    return siwe.verify(text, signature, **(binding | change))


def test_verify_returns_the_parsed_message() -> None:
    text = _signed_text()
    message = _verify(text, _sign(text))
    assert message == siwe.parse(text)
    assert message.address == ALICE.address


def test_verify_accepts_message_without_time_bounds_on_the_real_clock() -> None:
    text = _signed_text(expiration_time=None, not_before=None)
    assert siwe.verify(text, _sign(text), domain="app.example.com", nonce="Ab12Cd34Ef56Gh78")


@pytest.mark.parametrize(
    ("change", "error", "code"),
    [
        pytest.param({"domain": "evil.example"}, BindingMismatch, "domain_mismatch", id="domain"),
        pytest.param(
            {"domain": "app.example.com:443"}, BindingMismatch, "domain_mismatch", id="domain-port"
        ),
        pytest.param({"nonce": "Zz99Yy88Xx77Ww66"}, NonceRejected, "nonce_unknown", id="nonce"),
        pytest.param(
            {"now": ISSUED + timedelta(minutes=5)}, OutsideValidity, "message_expired", id="expired"
        ),
        pytest.param(
            {"now": ISSUED - timedelta(seconds=1)},
            OutsideValidity,
            "message_not_yet_valid",
            id="not-yet-valid",
        ),
    ],
)
def test_verify_rejects_binding_and_time(
    change: dict[str, Any], error: type[KeyproofError], code: str
) -> None:
    text = _signed_text()
    with pytest.raises(error) as caught:
        _verify(text, _sign(text), **change)
    assert caught.value.code == code


def test_verify_rejects_another_signer() -> None:
    text = _signed_text()
    with pytest.raises(SignatureInvalid) as caught:
        _verify(text, _sign(text, MALLORY))
    assert caught.value.code == "signature_invalid"


def test_verify_rejects_message_altered_after_signing() -> None:
    text = _signed_text()
    signature = _sign(text)
    altered = text.replace("escrow desk", "escrow desk and drain the vault")
    with pytest.raises(SignatureInvalid):
        _verify(altered, signature)


def test_verify_rejects_signature_for_another_address_in_the_message() -> None:
    text = _signed_text(address=MALLORY.address)
    with pytest.raises(SignatureInvalid):
        _verify(text, _sign(text, ALICE))


def test_verify_signs_exact_bytes_not_a_reserialization() -> None:
    # Same fields, different spelling of a time: a verifier that re-rendered the
    # parsed message would still accept; keyproof checks the bytes that were signed.
    text = _signed_text()
    respelled = text.replace("Issued At: 2027-01-15T08:00:00Z", "Issued At: 2027-01-15T08:00:00.0Z")
    with pytest.raises(SignatureInvalid):
        _verify(respelled, _sign(text))


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("", id="empty"),
        pytest.param("0x1234", id="short"),
        pytest.param("zz" * 65, id="not-hex"),
    ],
)
def test_verify_rejects_malformed_signatures(signature: str) -> None:
    with pytest.raises(MalformedSignature):
        _verify(_signed_text(), signature)


def test_verify_checks_the_grammar_first() -> None:
    text = _signed_text()
    with pytest.raises(MalformedMessage):
        _verify(text + "\n", _sign(text + "\n"))


def test_verify_checks_binding_before_signature() -> None:
    with pytest.raises(BindingMismatch):
        _verify(_signed_text(), _sign(_signed_text(), MALLORY), domain="other.example")


def test_verify_refuses_naive_now() -> None:
    text = _signed_text()
    with pytest.raises(TypeError):
        _verify(text, _sign(text), now=datetime(2027, 1, 15, 8, 1))


# --- the worked example in specs/protocol.md -------------------------------------------


def test_worked_example_in_the_spec() -> None:
    example = spec_example("Worked example: Ethereum")
    wallet = Account.from_key(bytes.fromhex(example["secret"]))
    account = parse_account(f"eip155:1:{wallet.address.lower()}", frozenset({"eip155:1"}))
    assert account.id == example["account"]
    assert siwe.FAMILY.render(example_challenge(account)) == example["message"]
    assert _sign(example["message"], wallet) == example["signature"]
    _, parsed = siwe.FAMILY.parse(example["message"])
    assert parsed == account
    siwe.FAMILY.verify(parsed, example["message"].encode(), example["signature"])


def test_worked_example_signature_forms() -> None:
    # The sentence after the example: v = 0 is the same signature; v = 35 and the
    # high-S twin (r, n - s) with the other recovery id are refused.
    example = spec_example("Worked example: Ethereum")
    _, account = siwe.FAMILY.parse(example["message"])
    data = example["message"].encode()
    signature = bytes.fromhex(example["signature"].removeprefix("0x"))
    assert signature[64] == 27
    siwe.FAMILY.verify(account, data, "0x" + (signature[:64] + b"\x00").hex())
    with pytest.raises(MalformedSignature):
        siwe.FAMILY.verify(account, data, "0x" + (signature[:64] + bytes([35])).hex())
    s = int.from_bytes(signature[32:64], "big")
    twin = signature[:32] + (CURVE_ORDER - s).to_bytes(32, "big") + b"\x1c"
    with pytest.raises(SignatureInvalid):
        siwe.FAMILY.verify(account, data, "0x" + twin.hex())
