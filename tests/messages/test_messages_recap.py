"""ReCaps (EIP-5573): encoding, strict decoding, the sentence and the scopes."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyproof.errors import KeyproofError, MalformedMessage
from keyproof.messages import _fields as f
from keyproof.messages import recap, siwe
from keyproof.messages.recap import Capability

FAST = settings(max_examples=200, deadline=None)

# EIP-5573 (ethereum/ERCs, ERCS/erc-5573.md), "ReCap SIWE Extension": the example SIWE
# message with the ReCap extension.
EIP_SIWE_EXAMPLE = """\
example.com wants you to sign in with your Ethereum account:
0x0000000000000000000000000000000000000000

I further authorize the stated URI to perform the following actions on my behalf: (1) 'example': 'append', 'read' for 'https://example.com'. (2) 'other': 'action' for 'https://example.com'. (3) 'example': 'append', 'delete' for 'my:resource:uri.1'. (4) 'example': 'append' for 'my:resource:uri.2'. (5) 'example': 'append' for 'my:resource:uri.3'.

URI: did:key:example
Version: 1
Chain ID: 1
Nonce: mynonce1
Issued At: 2022-06-21T12:00:00.000Z
Resources:
- urn:recap:eyJhdHQiOnsiaHR0cHM6Ly9leGFtcGxlLmNvbSI6eyJleGFtcGxlL2FwcGVuZCI6W10sImV4YW1wbGUvcmVhZCI6W10sIm90aGVyL2FjdGlvbiI6W119LCJteTpyZXNvdXJjZTp1cmkuMSI6eyJleGFtcGxlL2FwcGVuZCI6W10sImV4YW1wbGUvZGVsZXRlIjpbXX0sIm15OnJlc291cmNlOnVyaS4yIjp7ImV4YW1wbGUvYXBwZW5kIjpbXX0sIm15OnJlc291cmNlOnVyaS4zIjp7ImV4YW1wbGUvYXBwZW5kIjpbXX19LCJwcmYiOltdfQ"""  # noqa: E501

# EIP-5573 "ReCap URI Scheme" / "ReCap Details Object Schema": the example ReCap
# Capability, its transformed statement (for URI https://example.com) and its object.
EIP_RECAP_URI = "urn:recap:eyJhdHQiOnsiaHR0cHM6Ly9leGFtcGxlLmNvbS9waWN0dXJlcy8iOnsiY3J1ZC9kZWxldGUiOlt7fV0sImNydWQvdXBkYXRlIjpbe31dLCJvdGhlci9hY3Rpb24iOlt7fV19LCJtYWlsdG86dXNlcm5hbWVAZXhhbXBsZS5jb20iOnsibXNnL3JlY2VpdmUiOlt7Im1heF9jb3VudCI6NSwidGVtcGxhdGVzIjpbIm5ld3NsZXR0ZXIiLCJtYXJrZXRpbmciXX1dLCJtc2cvc2VuZCI6W3sidG8iOiJzb21lb25lQGVtYWlsLmNvbSJ9LHsidG8iOiJqb2VAZW1haWwuY29tIn1dfX0sInByZiI6WyJ6ZGo3V2o2Rk5TNHJVVWJzaUp2amp4Y3NOcVpkRENTaVlSOHNLUVhmb1BmcFNadUF3Il19"  # noqa: E501
EIP_RECAP_STATEMENT = "I further authorize the stated URI to perform the following actions on my behalf: (1) 'crud': 'delete', 'update' for 'https://example.com/pictures/'. (2) 'other': 'action' for 'https://example.com/pictures/'. (3) 'msg': 'receive', 'send' for 'mailto:username@example.com'."  # noqa: E501


def _urn(document: Any) -> str:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return recap.RECAP_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _urn_text(text: str) -> str:
    return _urn(text.encode("utf-8"))


# --- the EIP's own examples ------------------------------------------------------------


def test_eip_capability_decodes() -> None:
    capability = recap.decode_recap(EIP_RECAP_URI)
    assert list(capability.attenuations) == [
        "https://example.com/pictures/",
        "mailto:username@example.com",
    ]
    pictures = capability.attenuations["https://example.com/pictures/"]
    assert list(pictures) == ["crud/delete", "crud/update", "other/action"]
    assert pictures["crud/delete"] == ({},)
    mail = capability.attenuations["mailto:username@example.com"]
    assert mail["msg/receive"] == ({"max_count": 5, "templates": ("newsletter", "marketing")},)
    assert mail["msg/send"] == ({"to": "someone@email.com"}, {"to": "joe@email.com"})
    assert capability.proofs == ("zdj7Wj6FNS4rUUbsiJvjjxcsNqZdDCSiYR8sKQXfoPfpSZuAw",)


def test_eip_capability_sentence() -> None:
    assert recap.recap_sentence(recap.decode_recap(EIP_RECAP_URI)) == EIP_RECAP_STATEMENT


def test_eip_capability_re_encodes_to_the_same_uri() -> None:
    assert recap.encode_capability(recap.decode_recap(EIP_RECAP_URI)) == EIP_RECAP_URI


def test_eip_siwe_example_statement_is_its_recap_sentence() -> None:
    message = siwe.parse(EIP_SIWE_EXAMPLE)
    capability = recap.signed_capability(message.statement, message.resources)
    assert capability is not None
    assert message.statement == recap.recap_sentence(capability)
    assert recap.encode_capability(capability) == message.resources[-1]
    # Every ability there has an empty nota bene list: it can never be used.
    assert recap.scopes_of(capability, "https://example.com") == frozenset()


# --- encoding what keyproof writes -----------------------------------------------------


def test_encode_recap_exact_json() -> None:
    resource = recap.encode_recap("https://example.com", ["escrow:release", "escrow:read"])
    payload = resource.removeprefix("urn:recap:")
    assert "=" not in payload
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert raw == (
        b'{"att":{"https://example.com":{"escrow/read":[{}],"escrow/release":[{}]}},"prf":[]}'
    )


def test_encode_recap_sentence() -> None:
    capability = recap.decode_recap(
        recap.encode_recap("https://example.com", ["escrow:read", "escrow:release"])
    )
    assert recap.recap_sentence(capability) == (
        "I further authorize the stated URI to perform the following actions on my behalf:"
        " (1) 'escrow': 'read', 'release' for 'https://example.com'."
    )


def test_sentence_numbers_one_entry_per_namespace() -> None:
    capability = recap.decode_recap(
        recap.encode_recap("https://api.example", ["profile:read", "escrow:read", "escrow:release"])
    )
    assert recap.recap_sentence(capability).endswith(
        " (1) 'escrow': 'read', 'release' for 'https://api.example'."
        " (2) 'profile': 'read' for 'https://api.example'."
    )


def test_encode_recap_deduplicates_and_sorts() -> None:
    once = recap.encode_recap("https://a.example", ["b:x", "a:y"])
    assert recap.encode_recap("https://a.example", ("a:y", "b:x", "a:y")) == once


@pytest.mark.parametrize(
    ("audience", "scopes"),
    [
        pytest.param("https://a.example", [], id="no-scopes"),
        pytest.param("https://a.example", ["escrow"], id="scope-without-namespace"),
        pytest.param("https://a.example", ["Escrow:read"], id="uppercase-scope"),
        pytest.param("https://a.example", ["escrow:*"], id="wildcard-scope"),
        pytest.param("https://a.example", ["escrow/read"], id="ability-not-scope"),
        pytest.param("https://a.example", ["escrow:read:all"], id="three-parts"),
        pytest.param("https://a.example", ["-x:read"], id="leading-hyphen"),
        pytest.param("https://a.example", [f"x:{'a' * 65}"], id="name-too-long"),
        pytest.param(
            "https://a.example", [f"n:s{i}" for i in range(recap.MAX_SCOPES + 1)], id="too-many"
        ),
        pytest.param("not a uri", ["escrow:read"], id="audience-not-uri"),
        pytest.param("/relative", ["escrow:read"], id="relative-audience"),
    ],
)
def test_encode_recap_rejects(audience: str, scopes: list[str]) -> None:
    with pytest.raises(MalformedMessage) as caught:
        recap.encode_recap(audience, scopes)
    assert caught.value.code == "malformed_message"


scope_parts = st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,10}\Z")
scope_sets = st.sets(st.builds("{}:{}".format, scope_parts, scope_parts), min_size=1, max_size=20)


@FAST
@given(scope_sets, st.sampled_from(["https://api.example.com", "did:key:z6MkAgent", "urn:x:y"]))
def test_scopes_round_trip(scopes: set[str], audience: str) -> None:
    capability = recap.decode_recap(recap.encode_recap(audience, scopes))
    assert recap.scopes_of(capability, audience) == scopes
    assert recap.scopes_of(capability, audience + "/other") == frozenset()
    sentence = recap.recap_sentence(capability)
    assert sentence.startswith(recap.PREAMBLE + " (1) ")
    assert sentence.count(f" for '{audience}'.") == len({s.split(":")[0] for s in scopes})


@FAST
@given(scope_sets, st.permutations(range(20)))
def test_encoding_is_independent_of_scope_order(scopes: set[str], order: list[int]) -> None:
    ordered = sorted(scopes)
    shuffled = [ordered[i] for i in order if i < len(ordered)]
    assert recap.encode_recap("https://a.example", shuffled) == recap.encode_recap(
        "https://a.example", ordered
    )


# --- statement_with_recap --------------------------------------------------------------

ESCROW = recap.decode_recap(recap.encode_recap("https://api.example.com", ["escrow:read"]))
ESCROW_SENTENCE = recap.recap_sentence(ESCROW)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        pytest.param(None, ESCROW_SENTENCE, id="no-statement"),
        pytest.param("", ESCROW_SENTENCE, id="empty-statement"),
        pytest.param("Sign in.", "Sign in. " + ESCROW_SENTENCE, id="with-statement"),
    ],
)
def test_statement_with_recap(statement: str | None, expected: str) -> None:
    assert recap.statement_with_recap(statement, ESCROW) == expected


def test_statement_with_recap_refuses_text_a_siwe_statement_cannot_hold() -> None:
    percent = recap.decode_recap(recap.encode_recap("https://a.example/%20x", ["escrow:read"]))
    with pytest.raises(MalformedMessage, match="statement"):
        recap.statement_with_recap(None, percent)
    with pytest.raises(MalformedMessage, match="statement"):
        recap.statement_with_recap('Say "yes".', ESCROW)


# --- scopes_of -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("abilities", "expected"),
    [
        pytest.param({"escrow/read": [{}]}, {"escrow:read"}, id="unrestricted"),
        pytest.param({"escrow/read": [{"max": 1}, {}]}, {"escrow:read"}, id="also-unrestricted"),
        pytest.param({"escrow/read": [{"max": 1}]}, set(), id="restricted-only"),
        pytest.param({"escrow/read": []}, set(), id="empty-list-means-unusable"),
        pytest.param({"escrow/*": [{}]}, set(), id="wildcard-not-widened"),
        pytest.param({"Escrow/Read": [{}]}, set(), id="not-a-keyproof-scope"),
        pytest.param({"crud+x/read": [{}]}, set(), id="plus-not-in-scope-grammar"),
    ],
)
def test_scopes_of(abilities: dict[str, Any], expected: set[str]) -> None:
    capability = Capability({"https://api.example.com": abilities})
    assert recap.scopes_of(capability, "https://api.example.com") == expected


def test_scopes_of_ignores_other_resources() -> None:
    capability = Capability(
        {"https://other.example": {"escrow/release": [{}]}, "https://api.example": {"a/b": [{}]}}
    )
    assert recap.scopes_of(capability, "https://api.example") == {"a:b"}


# --- strict decoding -------------------------------------------------------------------

GOOD = {"att": {"https://a.example": {"escrow/read": [{}]}}, "prf": []}


def _deep(depth: int) -> dict[str, Any]:
    note: Any = {}
    for _ in range(depth):
        note = {"k": note}
    return {"att": {"https://a.example": {"escrow/read": [note]}}}


INVALID_RECAPS = {
    "wrong-prefix": "urn:recaps:" + _urn(GOOD).removeprefix("urn:recap:"),
    "uppercase-prefix": "URN:RECAP:" + _urn(GOOD).removeprefix("urn:recap:"),
    "no-prefix": _urn(GOOD).removeprefix("urn:recap:"),
    "empty-payload": "urn:recap:",
    "padding": _urn(b'{"att":{"https://a.example":{"a/b":[{}]}}}') + "=",
    "standard-alphabet": _urn(GOOD).replace("_", "/").replace("-", "+") + "+/",
    "impossible-length": _urn(GOOD)
    + "A" * ((1 - len(_urn(GOOD).removeprefix("urn:recap:"))) % 4 or 4),
    "non-canonical-trailing-bits": _urn(b"{}")[:-1] + "1",
    "whitespace": _urn(GOOD)[:20] + " " + _urn(GOOD)[20:],
    "not-json": _urn(b"not json"),
    "invalid-utf8": _urn(b'{"att":{"\xff":1}}'),
    "utf8-bom": _urn(b"\xef\xbb\xbf" + json.dumps(GOOD).encode()),
    "utf16-json": _urn(json.dumps(GOOD).encode("utf-16")),
    "top-level-array": _urn([GOOD]),
    "top-level-string": _urn("att"),
    "missing-att": _urn({"prf": []}),
    "empty-att": _urn({"att": {}, "prf": []}),
    "att-not-object": _urn({"att": ["https://a.example"]}),
    "extra-top-level-key": _urn({"att": GOOD["att"], "exp": 1, "prf": []}),
    "unsorted-top-level": _urn_text('{"prf":[],"att":{"https://a.example":{"a/b":[{}]}}}'),
    "unsorted-resources": _urn(
        {"att": {"https://b.example": {"a/b": [{}]}, "https://a.example": {"a/b": [{}]}}}
    ),
    "unsorted-abilities": _urn_text('{"att":{"https://a.example":{"b/a":[{}],"a/b":[{}]}}}'),
    "unsorted-nota-bene": _urn_text('{"att":{"https://a.example":{"a/b":[{"z":1,"a":2}]}}}'),
    "duplicate-ability": _urn_text('{"att":{"https://a.example":{"a/b":[{}],"a/b":[{}]}}}'),
    "duplicate-att": _urn_text('{"att":{"https://a.example":{"a/b":[{}]}},"att":{}}'),
    "resource-not-uri": _urn({"att": {"a example": {"a/b": [{}]}}}),
    "resource-relative": _urn({"att": {"/path": {"a/b": [{}]}}}),
    "no-abilities": _urn({"att": {"https://a.example": {}}}),
    "ability-no-slash": _urn({"att": {"https://a.example": {"escrow": [{}]}}}),
    "ability-two-slashes": _urn({"att": {"https://a.example": {"a/b/c": [{}]}}}),
    "ability-empty-name": _urn({"att": {"https://a.example": {"escrow/": [{}]}}}),
    "ability-space": _urn({"att": {"https://a.example": {"es crow/read": [{}]}}}),
    "ability-backtick-from-eip-typo": _urn({"att": {"https://a.example": {"a/b`": [{}]}}}),
    "abilities-not-object": _urn({"att": {"https://a.example": ["a/b"]}}),
    "nota-bene-not-list": _urn({"att": {"https://a.example": {"a/b": {}}}}),
    "nota-bene-string": _urn({"att": {"https://a.example": {"a/b": "all"}}}),
    "nota-bene-item-not-object": _urn({"att": {"https://a.example": {"a/b": [1]}}}),
    "nota-bene-null": _urn({"att": {"https://a.example": {"a/b": [None]}}}),
    "nan": _urn_text('{"att":{"https://a.example":{"a/b":[{"n":NaN}]}}}'),
    "infinity": _urn_text('{"att":{"https://a.example":{"a/b":[{"n":-Infinity}]}}}'),
    "overflowing-number": _urn_text('{"att":{"https://a.example":{"a/b":[{"n":1e999}]}}}'),
    "lone-surrogate": _urn_text('{"att":{"https://a.example":{"a/b":[{"n":"\\ud800"}]}}}'),
    "too-deep": _urn(_deep(recap.MAX_DEPTH)),
    "recursion-bomb": _urn_text('{"att":{"https://a.example":{"a/b":[' + "[" * 1200 + "]" * 1200),
    "prf-not-list": _urn({"att": GOOD["att"], "prf": "bafy"}),
    "prf-not-strings": _urn({"att": GOOD["att"], "prf": [1]}),
    "prf-not-cid": _urn({"att": GOOD["att"], "prf": ["not a cid"]}),
    "too-long": _urn({"att": {"https://a.example/" + "a" * f.MAX_RESOURCE: {"a/b": [{}]}}}),
    "trailing-garbage": _urn_text(json.dumps(GOOD, separators=(",", ":")) + "x"),
}


@pytest.mark.parametrize("resource", INVALID_RECAPS.values(), ids=INVALID_RECAPS.keys())
def test_decode_rejects(resource: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        recap.decode_recap(resource)
    assert caught.value.code == "malformed_message"


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(GOOD, id="keyproof-shape"),
        pytest.param({"att": GOOD["att"]}, id="without-prf"),
        pytest.param(_deep(recap.MAX_DEPTH - 5), id="nested-nota-bene"),
        pytest.param({"att": {"https://a.example": {"a-b/c": [{}], "a/b": [{}]}}}, id="js-order"),
        pytest.param(
            {"att": {"https://a.example": {"msg/send": [{}], "msg/send-to": [{}]}}},
            id="prefix-first",
        ),
        pytest.param(
            {"att": {"https://a.example": {"a/b": [{"n": 1.5, "é": "ü"}]}}}, id="unicode-values"
        ),
    ],
)
def test_decode_accepts(document: dict[str, Any]) -> None:
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    capability = recap.decode_recap(_urn_text(text))
    assert recap.decode_recap(recap.encode_capability(capability)) == capability
    att = json.dumps(document["att"], separators=(",", ":"), ensure_ascii=False)
    assert recap.encode_capability(capability) == _urn_text(f'{{"att":{att},"prf":[]}}')


@pytest.mark.parametrize("value", [None, 7, b"urn:recap:e30"])
def test_decode_refuses_non_text(value: Any) -> None:
    with pytest.raises(MalformedMessage):
        recap.decode_recap(value)


@FAST
@given(st.text(alphabet="ABCDEFabcdef0123456789-_=+/ ", max_size=200))
def test_arbitrary_payloads_raise_only_keyproof_errors(payload: str) -> None:
    with contextlib.suppress(KeyproofError):
        recap.decode_recap(recap.RECAP_PREFIX + payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@FAST
@given(json_values)
def test_arbitrary_json_raises_only_keyproof_errors(value: Any) -> None:
    for document in (
        value,
        {"att": value},
        {"att": {"https://a.example": value}},
        {"att": {"https://a.example": {"a/b": value}}},
    ):
        raw = json.dumps(document, sort_keys=True, allow_nan=True).encode("utf-8", "surrogatepass")
        with contextlib.suppress(KeyproofError):
            recap.decode_recap(_urn(raw))


# --- Capability is immutable and validated ---------------------------------------------


def test_capability_is_read_only() -> None:
    capability = Capability({"https://a.example": {"a/b": [{"k": [1, 2]}]}})
    with pytest.raises(TypeError):
        capability.attenuations["https://b.example"] = {}  # type: ignore[index]
    note = capability.attenuations["https://a.example"]["a/b"][0]
    assert note["k"] == (1, 2)
    with pytest.raises(TypeError):
        note["k"] = 3  # type: ignore[index]


def test_capability_copies_its_input() -> None:
    source: dict[str, Any] = {"https://a.example": {"a/b": [{}]}}
    capability = Capability(source)
    source["https://a.example"]["a/b"].append({"k": 1})
    assert capability.attenuations["https://a.example"]["a/b"] == ({},)


@pytest.mark.parametrize(
    ("attenuations", "proofs"),
    [
        pytest.param({}, (), id="empty"),
        pytest.param({"nope": {"a/b": [{}]}}, (), id="resource-not-uri"),
        pytest.param({"https://a.example": {"a": [{}]}}, (), id="ability-no-slash"),
        pytest.param({"https://a.example": {"a/b": [{}]}}, ["bafy"], id="proofs-list"),
        pytest.param({"https://a.example": {"a/b": [{}]}}, ("",), id="empty-proof"),
        pytest.param({"https://a.example": {"a/b": [{"x": object()}]}}, (), id="not-json"),
        pytest.param({"https://a.example": {"a/b": [{1: 2}]}}, (), id="non-text-key"),
        pytest.param({"https://a.example": {"a/b": "x"}}, (), id="nota-bene-text"),
    ],
)
def test_capability_validates(attenuations: Any, proofs: Any) -> None:
    with pytest.raises(MalformedMessage):
        Capability(attenuations, proofs)


# --- signed_capability (EIP-5573 "ReCap Verification Algorithm") -----------------------

ESCROW_URN = recap.encode_capability(ESCROW)


def test_signed_capability_none_without_recap() -> None:
    assert recap.signed_capability("Sign in.", ("https://a.example",)) is None
    assert recap.signed_capability(None, ()) is None


@pytest.mark.parametrize(
    "statement", [ESCROW_SENTENCE, "Sign in. " + ESCROW_SENTENCE], ids=["sentence", "appended"]
)
def test_signed_capability_accepts(statement: str) -> None:
    assert recap.signed_capability(statement, ("https://x.example", ESCROW_URN)) == ESCROW


@pytest.mark.parametrize(
    ("statement", "resources"),
    [
        pytest.param(None, (ESCROW_URN,), id="no-statement"),
        pytest.param("Sign in.", (ESCROW_URN,), id="sentence-missing"),
        pytest.param("Sign in." + ESCROW_SENTENCE, (ESCROW_URN,), id="no-space-before-sentence"),
        pytest.param(ESCROW_SENTENCE + " Also more.", (ESCROW_URN,), id="text-after-sentence"),
        pytest.param(ESCROW_SENTENCE, (ESCROW_URN, "https://x.example"), id="recap-not-last"),
        pytest.param(ESCROW_SENTENCE, (ESCROW_URN, ESCROW_URN), id="two-recaps"),
        pytest.param(
            ESCROW_SENTENCE, ("URN:RECAP:e30", ESCROW_URN), id="case-variant-recap-earlier"
        ),
        pytest.param(ESCROW_SENTENCE, ("urn:recap:!!",), id="undecodable-recap"),
    ],
)
def test_signed_capability_rejects(statement: str | None, resources: tuple[str, ...]) -> None:
    with pytest.raises(MalformedMessage):
        recap.signed_capability(statement, resources)
