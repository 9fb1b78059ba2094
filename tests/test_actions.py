"""Signed actions: EIP-712 hashing, the check order, and one test per attack class."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.testclient import TestClient

from keyproof._httpio import access_credentials
from keyproof.actions import (
    ACTION_CONTEXT,
    ACTION_TYPES,
    Action,
    ActionLimits,
    ActionVerifier,
)
from keyproof.crypto import eip712
from keyproof.crypto.encoding import encode_base64url
from keyproof.crypto.secp256k1 import CURVE_ORDER, checksum_address, recover_digest
from keyproof.errors import InvalidRequest, KeyproofError, TokenInvalid
from keyproof.server.app import create_app
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.stores.base import Kind
from keyproof.stores.memory import MemoryStore

from conftest import START, FrozenClock
from wallets import AgentEd25519Wallet, AgentSecp256k1Wallet, EthWallet, SolanaWallet

SERVICE = "Acme Escrow"
AUDIENCE = "http://127.0.0.1:8000"
SPEC = Path(__file__).resolve().parents[1] / "specs" / "protocol.md"


def document(chain: str = "eip155:1", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "service": SERVICE,
        "audience": AUDIENCE,
        "chain": chain,
        "type": "escrow.release",
        "object": "escrow-42",
        "id": secrets.token_hex(16),
        "deadline": START + 300,
        "amount": "12.5",
        "currency": "USDC",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def claims_for(sub: str, audience: str = AUDIENCE) -> dict[str, Any]:
    return {"sub": sub, "aud": audience, "scope": "escrow:release", "jti": "j"}


def eth_sign(wallet: EthWallet, doc: dict[str, Any]) -> str:
    return wallet.sign_typed_data(Action.parse(doc).typed_data())


@pytest.fixture
async def store(clock: FrozenClock) -> AsyncIterator[MemoryStore]:
    opened = MemoryStore(clock=clock)
    yield opened
    await opened.close()


@pytest.fixture
def verifier(store: MemoryStore, clock: FrozenClock) -> ActionVerifier:
    return ActionVerifier(store, service=SERVICE, clock=clock)


async def verify(
    verifier: ActionVerifier,
    doc: Any,
    signature: Any,
    sub: str,
    *,
    action_type: str = "escrow.release",
    object_id: str = "escrow-42",
    audience: str = AUDIENCE,
):
    return await verifier.verify(
        doc,
        signature,
        claims=claims_for(sub, audience),
        action_type=action_type,
        object_id=object_id,
    )


async def rejected(coro: Any) -> str:
    with pytest.raises(KeyproofError) as info:
        await coro
    return info.value.code


# --- EIP-712 ------------------------------------------------------------------------------

MAIL_TYPES = {
    "Person": (("name", "string"), ("wallet", "address")),
    "Mail": (("from", "Person"), ("to", "Person"), ("contents", "string")),
}
MAIL_DOMAIN = {
    "name": "Ether Mail",
    "version": "1",
    "chainId": 1,
    "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
}
MAIL = {
    "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
    "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
    "contents": "Hello, Bob!",
}


def test_eip712_mail_example_from_the_eip():
    assert eip712.encode_type("Mail", MAIL_TYPES) == (
        "Mail(Person from,Person to,string contents)Person(string name,address wallet)"
    )
    assert eip712.domain_separator(MAIL_DOMAIN).hex() == (
        "f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f"
    )
    assert eip712.hash_struct("Mail", MAIL_TYPES, MAIL).hex() == (
        "c52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e"
    )
    assert eip712.typed_data_digest(MAIL_DOMAIN, "Mail", MAIL_TYPES, MAIL).hex() == (
        "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    )


@pytest.mark.parametrize("doc", [document(), document(amount=None, currency=None)], ids=str)
def test_action_typed_data_hashes_as_eth_account_does(doc: dict[str, Any]):
    action = Action.parse(doc)
    payload = action.typed_data()
    signable = encode_typed_data(full_message=payload)
    assert bytes(signable.header) == eip712.domain_separator(payload["domain"])
    assert bytes(signable.body) == eip712.hash_struct("Action", ACTION_TYPES, payload["message"])
    wallet = EthWallet.create()
    signature = bytes.fromhex(wallet.sign_typed_data(payload)[2:])
    recovered = recover_digest(action.typed_data_digest(), signature)
    assert checksum_address(recovered) == wallet.address


def test_eip712_refuses_unsupported_types_and_out_of_range_values():
    with pytest.raises(ValueError, match="unsupported"):
        eip712.hash_struct("T", {"T": (("x", "int8"),)}, {"x": 1})
    with pytest.raises(ValueError, match="uint256"):
        eip712.hash_struct("T", {"T": (("x", "uint256"),)}, {"x": -1})
    with pytest.raises(ValueError, match="20 bytes"):
        eip712.hash_struct("T", {"T": (("x", "address"),)}, {"x": "0x1234"})


# --- accepted actions, every family -------------------------------------------------------


async def test_ethereum_wallet_action_is_accepted_once(verifier: ActionVerifier, store):
    wallet = EthWallet.create()
    doc = document()
    verified = await verify(verifier, doc, eth_sign(wallet, doc), wallet.caip10())
    assert verified.signer == wallet.caip10()
    assert verified.to_json() == {
        "valid": True,
        "action": doc,
        "signer": wallet.caip10(),
        "scope": "escrow:release",
        "sub": wallet.caip10(),
    }
    assert await store.count(Kind.ACTION) == 1


@pytest.mark.parametrize(
    ("make", "sign"),
    [
        (AgentEd25519Wallet.create, lambda w, data: encode_base64url(w.sign_bytes(data))),
        (AgentSecp256k1Wallet.create, lambda w, data: encode_base64url(w.sign_bytes(data))),
    ],
    ids=["did-key-ed25519", "did-key-secp256k1"],
)
async def test_agent_key_signs_canonical_json_with_context(verifier, make, sign):
    wallet = make()
    doc = document(chain="did:key")
    signature = sign(wallet, Action.parse(doc).signing_input())
    verified = await verify(verifier, doc, signature, wallet.did)
    assert verified.signer == wallet.did
    assert (await rejected(verify(verifier, doc, signature, wallet.did))) == "action_replayed"


async def test_solana_wallet_signs_canonical_json_with_context(verifier: ActionVerifier):
    import base58

    wallet = SolanaWallet.create()
    doc = document(chain="solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp")
    signature = base58.b58encode(wallet.sign_bytes(Action.parse(doc).signing_input())).decode()
    assert (await verify(verifier, doc, signature, wallet.caip10())).signer == wallet.caip10()


def test_signing_input_is_context_prefix_and_rfc8785_json():
    doc = document(id="0" * 32)
    expected = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert Action.parse(doc).signing_input() == ACTION_CONTEXT + expected


async def test_ed25519_signature_without_context_prefix_is_refused(verifier: ActionVerifier):
    wallet = AgentEd25519Wallet.create()
    doc = document(chain="did:key")
    bare = Action.parse(doc).signing_input()[len(ACTION_CONTEXT) :]
    signature = encode_base64url(wallet.sign_bytes(bare))
    code = await rejected(verify(verifier, doc, signature, wallet.did))
    assert code == "action_signer_mismatch"


# --- attack classes ------------------------------------------------------------------------


async def test_replayed_action(verifier: ActionVerifier):
    wallet = EthWallet.create()
    doc = document()
    signature = eth_sign(wallet, doc)
    await verify(verifier, doc, signature, wallet.caip10())
    assert (await rejected(verify(verifier, doc, signature, wallet.caip10()))) == "action_replayed"


async def test_replayed_action_with_another_signature_encoding(verifier: ActionVerifier):
    wallet = EthWallet.create()
    doc = document()
    signature = eth_sign(wallet, doc)
    await verify(verifier, doc, signature, wallet.caip10())
    v_flipped = signature[:-2] + format(int(signature[-2:], 16) - 27, "02x")  # v 27/28 -> 0/1
    code = await rejected(verify(verifier, doc, v_flipped, wallet.caip10()))
    assert code == "action_replayed"


async def test_action_signed_by_another_key(verifier: ActionVerifier, store):
    holder, other = EthWallet.create(), EthWallet.create()
    doc = document()
    code = await rejected(verify(verifier, doc, eth_sign(other, doc), holder.caip10()))
    assert code == "action_signer_mismatch"
    assert await store.count(Kind.ACTION) == 0
    await verify(verifier, doc, eth_sign(holder, doc), holder.caip10())


async def test_action_signed_by_another_agent_key(verifier: ActionVerifier):
    holder, other = AgentEd25519Wallet.create(), AgentEd25519Wallet.create()
    doc = document(chain="did:key")
    signature = encode_base64url(other.sign_bytes(Action.parse(doc).signing_input()))
    assert (await rejected(verify(verifier, doc, signature, holder.did))) == (
        "action_signer_mismatch"
    )


async def test_action_moved_to_another_escrow(verifier: ActionVerifier):
    wallet = EthWallet.create()
    doc = document(object="escrow-42")
    signature = eth_sign(wallet, doc)
    code = await rejected(verify(verifier, doc, signature, wallet.caip10(), object_id="escrow-7"))
    assert code == "action_domain_mismatch"
    moved = {**doc, "object": "escrow-7"}
    code = await rejected(verify(verifier, moved, signature, wallet.caip10(), object_id="escrow-7"))
    assert code == "action_signer_mismatch"
    await verify(verifier, doc, signature, wallet.caip10())  # the original is still unused


async def test_action_moved_to_another_action_type(verifier: ActionVerifier):
    wallet = EthWallet.create()
    doc = document(type="escrow.release")
    signature = eth_sign(wallet, doc)
    code = await rejected(
        verify(verifier, doc, signature, wallet.caip10(), action_type="escrow.refund")
    )
    assert code == "action_domain_mismatch"
    moved = {**doc, "type": "escrow.refund"}
    code = await rejected(
        verify(verifier, moved, signature, wallet.caip10(), action_type="escrow.refund")
    )
    assert code == "action_signer_mismatch"


async def test_action_moved_to_another_service_or_audience(store, clock):
    wallet = EthWallet.create()
    doc = document()
    signature = eth_sign(wallet, doc)
    other_service = ActionVerifier(store, service="Other Escrow", clock=clock)
    assert (await rejected(verify(other_service, doc, signature, wallet.caip10()))) == (
        "action_domain_mismatch"
    )
    ours = ActionVerifier(store, service=SERVICE, clock=clock)
    code = await rejected(
        verify(ours, doc, signature, wallet.caip10(), audience="http://127.0.0.1:9999")
    )
    assert code == "action_domain_mismatch"


async def test_action_moved_to_another_chain(verifier: ActionVerifier):
    wallet = EthWallet.create()
    doc = document(chain="eip155:137")
    signature = eth_sign(wallet, doc)
    code = await rejected(verify(verifier, doc, signature, wallet.caip10(chain=1)))
    assert code == "action_domain_mismatch"
    relabelled = {**doc, "chain": "eip155:1"}
    code = await rejected(verify(verifier, relabelled, signature, wallet.caip10(chain=1)))
    assert code == "action_signer_mismatch"


async def test_expired_action(verifier: ActionVerifier, clock: FrozenClock, store):
    wallet = EthWallet.create()
    doc = document(deadline=START + 60)
    signature = eth_sign(wallet, doc)
    clock.advance(60)
    assert (await rejected(verify(verifier, doc, signature, wallet.caip10()))) == "action_expired"
    assert await store.count(Kind.ACTION) == 0


async def test_deadline_too_far_ahead(verifier: ActionVerifier):
    wallet = EthWallet.create()
    doc = document(deadline=START + 3601)
    code = await rejected(verify(verifier, doc, eth_sign(wallet, doc), wallet.caip10()))
    assert code == "deadline_out_of_range"
    at_horizon = document(deadline=START + 3600)
    await verify(verifier, at_horizon, eth_sign(wallet, at_horizon), wallet.caip10())


@pytest.mark.parametrize(
    "amount",
    [
        "1e5",
        "1E5",
        "-1",
        "+1",
        "0",
        "0.000",
        "1" + "0" * 30,
        "0." + "0" * 18 + "1",
        "1.",
        ".5",
        "01",
        "0x10",
        " 1",
        "1,000",
        "NaN",
        "Infinity",
        "1" + "0" * 24 + ".000001",
        "\uff11",  # a fullwidth digit one
    ],
)
async def test_amount_out_of_range(verifier: ActionVerifier, amount: str):
    wallet = EthWallet.create()
    doc = document(amount=amount)
    try:
        signature = eth_sign(wallet, doc)
    except KeyproofError as refused:  # not even a well-formed document
        assert refused.code == "malformed_action"
        return
    code = await rejected(verify(verifier, doc, signature, wallet.caip10()))
    assert code == "amount_out_of_range"


@pytest.mark.parametrize("amount", ["1", "0.5", "12.345", "1" + "0" * 24, "0." + "0" * 17 + "1"])
async def test_amount_in_range(verifier: ActionVerifier, amount: str):
    wallet = EthWallet.create()
    doc = document(amount=amount)
    assert (await verify(verifier, doc, eth_sign(wallet, doc), wallet.caip10())).signer


async def test_configured_max_amount(store, clock):
    limited = ActionVerifier(
        store, service=SERVICE, clock=clock, limits=ActionLimits(max_amount=Decimal(100))
    )
    wallet = EthWallet.create()
    over = document(amount="100.01")
    code = await rejected(verify(limited, over, eth_sign(wallet, over), wallet.caip10()))
    assert code == "amount_out_of_range"
    edge = document(amount="100")
    await verify(limited, edge, eth_sign(wallet, edge), wallet.caip10())


# --- schema, signatures, order of checks ---------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"id": None},
        {"id": "A" * 32},
        {"id": "0" * 31},
        {"service": None},
        {"service": " padded"},
        {"service": "x" * 65},
        {"audience": "ftp://x"},
        {"chain": "eip155"},
        {"type": "release"},
        {"type": "Escrow.release"},
        {"object": ""},
        {"object": "a b"},
        {"object": "x" * 129},
        {"deadline": True},
        {"deadline": float(START + 300)},
        {"deadline": str(START + 300)},
        {"deadline": 0},
        {"deadline": 2**53},
        {"amount": 12.5},
        {"currency": None},
        {"amount": None},
        {"extra": "member"},
    ],
    ids=lambda c: ",".join(f"{k}={str(v)[:12]}" for k, v in c.items()),
)
def test_malformed_action(changes: dict[str, Any]):
    doc = document()
    for name, value in changes.items():
        if value is None:
            doc.pop(name, None)
        else:
            doc[name] = value
    with pytest.raises(KeyproofError) as info:
        Action.parse(doc)
    assert info.value.code == "malformed_action"


@pytest.mark.parametrize("value", [None, [], "text", 3, {"amount": None}])
def test_action_that_is_not_a_document(value: Any):
    with pytest.raises(KeyproofError) as info:
        Action.parse(value)
    assert info.value.code == "malformed_action"


async def test_bad_signature_does_not_burn_the_action_id(verifier: ActionVerifier, store):
    wallet = EthWallet.create()
    doc = document()
    signature = eth_sign(wallet, doc)
    r, s, v = int(signature[2:66], 16), int(signature[66:130], 16), signature[130:]
    high_s = "0x" + format(r, "064x") + format(CURVE_ORDER - s, "064x") + v
    attempts = [signature[:-2], signature + "00", "0x" + "zz" * 65, 42, high_s]
    codes = [await rejected(verify(verifier, doc, a, wallet.caip10())) for a in attempts]
    # 64 and 66 bytes can only be a contract wallet's, and no RPC is configured.
    assert codes == ["signature_invalid"] * 2 + ["malformed_signature"] * 2 + ["signature_invalid"]
    assert await store.count(Kind.ACTION) == 0
    await verify(verifier, doc, signature, wallet.caip10())


async def test_domain_and_deadline_are_checked_before_the_signature(verifier, clock):
    wallet = EthWallet.create()
    doc = document(deadline=START + 10)
    clock.advance(20)
    assert (await rejected(verify(verifier, doc, "garbage", wallet.caip10()))) == "action_expired"
    moved = await rejected(verify(verifier, doc, "garbage", wallet.caip10(), object_id="x"))
    assert moved == "action_domain_mismatch"


async def test_used_id_is_kept_until_after_the_deadline(verifier, store, clock):
    wallet = EthWallet.create()
    doc = document(deadline=START + 100)
    await verify(verifier, doc, eth_sign(wallet, doc), wallet.caip10())
    clock.advance(99)
    assert await store.count(Kind.ACTION) == 1
    clock.advance(1 + 60)
    assert await store.count(Kind.ACTION) == 0


async def test_same_action_id_for_two_signers_is_not_a_replay(verifier: ActionVerifier):
    first, second = EthWallet.create(), EthWallet.create()
    doc = document()
    await verify(verifier, doc, eth_sign(first, doc), first.caip10())
    await verify(verifier, doc, eth_sign(second, doc), second.caip10())


async def test_used_id_is_per_signer_across_services(store, clock):
    # specs/protocol.md: the used-id key is (signer, id); the service is not part of it.
    wallet = EthWallet.create()
    doc = document(id="0" * 32)
    await verify(
        ActionVerifier(store, service=SERVICE, clock=clock),
        doc,
        eth_sign(wallet, doc),
        wallet.caip10(),
    )
    elsewhere = ActionVerifier(store, service="Other Escrow", clock=clock)
    moved = document(id="0" * 32, service="Other Escrow")
    code = await rejected(verify(elsewhere, moved, eth_sign(wallet, moved), wallet.caip10()))
    assert code == "action_replayed"


async def test_token_subject_must_be_an_account(verifier: ActionVerifier):
    with pytest.raises(TokenInvalid):
        await verify(verifier, document(), "0x00", "not-an-account")


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=10),
        max_leaves=20,
    )
)
def test_parse_never_raises_anything_but_keyproof_errors(value: Any):
    with contextlib.suppress(KeyproofError):
        Action.parse(value)


@pytest.mark.parametrize(
    ("header", "credentials"),
    [
        ("Bearer abc.def.ghi", ("Bearer", "abc.def.ghi")),
        ("bearer abc", ("Bearer", "abc")),
        ("Bearer  abc", ("Bearer", "abc")),  # RFC 6750 §2.1: "Bearer" 1*SP b64token
        ("Bearer a b", ("Bearer", "a b")),  # the verifier refuses it as a token
        ("DPoP abc.def.ghi", ("DPoP", "abc.def.ghi")),  # RFC 9449 §7.1
        ("dpop abc", ("DPoP", "abc")),
        (None, None),
        ("Basic abc", None),
    ],
)
def test_authorization_header(header: str | None, credentials: tuple[str, str] | None):
    headers = {} if header is None else {"authorization": header}
    found = access_credentials(Request(http_scope(headers)))
    assert (found and (found.scheme, found.token)) == credentials


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer   ", "Bearer " + "a" * 9000, "DPoP", "DPoP  "],
)
def test_malformed_bearer_header_is_invalid_request(header: str):
    with pytest.raises(InvalidRequest):
        access_credentials(Request(http_scope({"authorization": header})))


def http_scope(headers: dict[str, str]) -> dict[str, Any]:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": raw}


# --- the worked example in specs/protocol.md ----------------------------------------------


def test_worked_example_in_the_spec():
    text = SPEC.read_text(encoding="utf-8")
    section = text.split("### Worked example: a signed escrow release", 1)[1]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1))
    action = Action.parse(example)
    payload = action.typed_data()
    assert f"`0x{eip712.domain_separator(payload['domain']).hex()}`" in section
    assert f"`0x{action.typed_data_digest().hex()}`" in section
    canonical = action.signing_input()[len(ACTION_CONTEXT) :].decode()
    assert f"`{canonical}`" in section
    encoded = encode_typed_data(full_message=payload)
    assert f"`0x{bytes(encoded.body).hex()}`" in section


# --- HTTP: POST /v1/actions/verify --------------------------------------------------------


@pytest.fixture
def client(settings: Settings, keyset: KeySet, clock: FrozenClock) -> Iterator[TestClient]:
    app = create_app(settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def login(client: TestClient, wallet: EthWallet, scope: str = "escrow:release") -> str:
    issued = client.post("/v1/challenge", json={"account": wallet.caip10(), "scope": scope})
    message = issued.json()["message"]
    token = client.post("/v1/token", json={"message": message, "signature": wallet.sign(message)})
    assert token.status_code == 200, token.text
    return str(token.json()["access_token"])


def expect(**changes: str) -> dict[str, str]:
    return {
        "service": SERVICE,
        "audience": AUDIENCE,
        "type": "escrow.release",
        "object": "escrow-42",
        "scope": "escrow:release",
        **changes,
    }


def post_action(client, token: str | None, doc, signature, expected=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {
        "action": doc,
        "signature": signature,
        "expect": expect() if expected is None else expected,
    }
    return client.post("/v1/actions/verify", json=body, headers=headers)


def test_http_verify_accepts_once_then_reports_replay(client: TestClient):
    wallet = EthWallet.create()
    token = login(client, wallet)
    doc = document()
    signature = eth_sign(wallet, doc)
    first = post_action(client, token, doc, signature)
    assert first.status_code == 200, first.text
    claims = jwt.decode(token, options={"verify_signature": False})
    assert first.json() == {
        "valid": True,
        "action": doc,
        "signer": wallet.caip10(),
        "scope": claims["scope"],
        "sub": wallet.caip10(),
        "exp": claims["exp"],
    }
    assert "escrow:release" in first.json()["scope"].split()
    assert first.headers["cache-control"] == "no-store"
    second = post_action(client, token, doc, signature)
    assert second.status_code == 401
    assert second.json()["reason"] == "action_replayed"


def test_http_verify_refuses_token_of_another_holder(client: TestClient):
    holder, other = EthWallet.create(), EthWallet.create()
    doc = document()
    response = post_action(client, login(client, other), doc, eth_sign(holder, doc))
    assert response.status_code == 401
    assert response.json()["reason"] == "action_signer_mismatch"


@pytest.mark.parametrize("token", [None, "not-a-jwt"])
def test_http_verify_needs_a_valid_bearer_token(client: TestClient, token: str | None):
    wallet = EthWallet.create()
    doc = document()
    response = post_action(client, token, doc, eth_sign(wallet, doc))
    assert response.status_code == 401
    assert response.json()["reason"] == "token_invalid"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_http_verify_refuses_token_for_another_audience(client: TestClient):
    wallet = EthWallet.create()
    doc = document(audience="http://127.0.0.1:9999")
    expected = expect(audience="http://127.0.0.1:9999")
    response = post_action(client, login(client, wallet), doc, eth_sign(wallet, doc), expected)
    assert response.status_code == 401
    assert response.json()["reason"] == "token_invalid"


def test_http_verify_refuses_revoked_token(client: TestClient):
    wallet = EthWallet.create()
    token = login(client, wallet)
    assert client.post("/v1/revoke", json={"token": token}).status_code == 200
    doc = document()
    response = post_action(client, token, doc, eth_sign(wallet, doc))
    assert response.status_code == 401
    assert response.json()["reason"] == "token_revoked"


@pytest.mark.parametrize(
    "expected",
    [
        {},
        {"service": SERVICE},
        {k: v for k, v in expect().items() if k != "scope"},
        {**expect(), "extra": "x"},
        {**expect(), "object": 7},
        expect(scope="escrow:release profile:read"),
        expect(scope='escrow:"release"'),
        expect(scope=""),
    ],
    ids=[
        "empty",
        "partial",
        "no-scope",
        "extra",
        "non-string",
        "two-scopes",
        "quote",
        "empty-scope",
    ],
)
def test_http_verify_requires_every_expectation(client: TestClient, expected):
    wallet = EthWallet.create()
    doc = document()
    response = post_action(client, login(client, wallet), doc, eth_sign(wallet, doc), expected)
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_field"


def test_http_verify_malformed_action_is_400(client: TestClient):
    wallet = EthWallet.create()
    response = post_action(client, login(client, wallet), {"id": "x"}, "0x00")
    assert response.status_code == 400
    assert response.json()["reason"] == "malformed_action"


def test_http_verify_refuses_token_without_the_expected_scope(client: TestClient):
    wallet = EthWallet.create()
    read_only = login(client, wallet, scope="profile:read")
    doc = document()
    signature = eth_sign(wallet, doc)
    refused = post_action(client, read_only, doc, signature)
    assert refused.status_code == 403
    assert refused.json()["reason"] == "insufficient_scope"
    assert refused.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="escrow:release"'
    )
    # The refusal used nothing up: the holder's release token then gets the action.
    accepted = post_action(client, login(client, wallet), doc, signature)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["scope"] == "escrow:release"


def test_http_verify_checks_the_scope_the_backend_names(client: TestClient):
    wallet = EthWallet.create()
    token = login(client, wallet, scope="escrow:release")
    doc = document()
    response = post_action(client, token, doc, eth_sign(wallet, doc), expect(scope="admin:all"))
    assert response.status_code == 403
    assert 'scope="admin:all"' in response.headers["www-authenticate"]
