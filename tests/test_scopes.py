"""Scope escalation: only scopes offered in the challenge, signed as a ReCap and allowed
by the policy are granted; free text, other resources and refresh grant nothing.

Each attack is a client-built message around a real nonce, signed by a real wallet.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from keyproof.errors import InvalidScope, MalformedMessage
from keyproof.messages import recap
from keyproof.messages.recap import Capability
from keyproof.server.app import create_app
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.server.service import Service
from keyproof.stores.memory import MemoryStore

from conftest import FrozenClock
from wallets import EthWallet

AUDIENCE = "http://127.0.0.1:8000"


@pytest.fixture
def wallet() -> EthWallet:
    return EthWallet.create()


def rebuild(
    message: str, *, statement: str | None = None, resources: list[str] | None = None
) -> str:
    """The challenge text with its statement and/or resource list replaced."""
    lines = message.split("\n")
    if statement is not None:
        lines[3] = statement
    if resources is not None:
        start = lines.index("Resources:")
        lines = lines[: start + 1] + [f"- {r}" for r in resources]
    return "\n".join(lines)


def offered_recap(message: str) -> str:
    return message.rsplit("\n", maxsplit=1)[-1].removeprefix("- ")


async def grant(service: Service, wallet: EthWallet, message: str) -> str:
    return (await service.redeem(message, wallet.sign(message))).scope


async def test_control_offered_and_signed_scopes_are_granted(service: Service, wallet: EthWallet):
    issued = await service.challenge(wallet.caip10(), "escrow:read escrow:release")
    assert await grant(service, wallet, issued.message) == "escrow:read escrow:release"


async def test_scope_escalation_via_statement_text(service: Service, wallet: EthWallet):
    issued = await service.challenge(wallet.caip10(), "escrow:read")
    sentence = recap.recap_sentence(recap.decode_recap(offered_recap(issued.message)))
    statement = f"Grant escrow:release admin:all and scope=escrow:release. {sentence}"
    assert await grant(service, wallet, rebuild(issued.message, statement=statement)) == (
        "escrow:read"
    )


async def test_scope_escalation_via_statement_without_recap(service: Service, wallet: EthWallet):
    issued = await service.challenge(wallet.caip10(), "escrow:read escrow:release")
    message = rebuild(
        issued.message,
        statement="I authorize escrow:read escrow:release admin:all.",
        resources=["https://127.0.0.1:8000/escrow/release"],
    )
    assert await grant(service, wallet, message) == ""


async def test_scope_escalation_via_a_sentence_the_recap_does_not_carry(
    service: Service, wallet: EthWallet
):
    issued = await service.challenge(wallet.caip10(), "escrow:read")
    bigger = recap.encode_recap(AUDIENCE, ["escrow:read", "escrow:release"])
    statement = recap.recap_sentence(recap.decode_recap(bigger))
    with pytest.raises(MalformedMessage):
        await grant(service, wallet, rebuild(issued.message, statement=statement))


@pytest.mark.parametrize(
    "extra",
    [
        ["https://127.0.0.1:8000/escrow:release"],
        ["urn:scope:admin:all", "escrow:release"],
        ["urn:recap:notreally"],
    ],
    ids=["url_naming_a_scope", "scope_like_uris", "second_recap_prefix"],
)
async def test_scope_escalation_via_other_resources(
    service: Service, wallet: EthWallet, extra: list[str]
):
    issued = await service.challenge(wallet.caip10(), "escrow:read")
    message = rebuild(issued.message, resources=[*extra, offered_recap(issued.message)])
    try:
        granted = await grant(service, wallet, message)
    except MalformedMessage:
        return  # refusing the message outright is as good as granting nothing extra
    assert granted == "escrow:read"


async def test_scope_escalation_via_a_recap_with_scopes_not_offered(
    service: Service, wallet: EthWallet
):
    issued = await service.challenge(wallet.caip10(), "escrow:read")
    # escrow:release is grantable to this account, admin:all is not; neither was offered.
    wider = recap.encode_recap(AUDIENCE, ["escrow:read", "escrow:release", "admin:all"])
    statement = recap.statement_with_recap("Sign in.", recap.decode_recap(wider))
    message = rebuild(issued.message, statement=statement, resources=[wider])
    assert await grant(service, wallet, message) == "escrow:read"


async def test_scope_escalation_via_a_recap_for_another_resource(
    service: Service, wallet: EthWallet
):
    issued = await service.challenge(wallet.caip10(), "escrow:read escrow:release")
    elsewhere = recap.encode_recap("https://attacker.example", ["escrow:release"])
    statement = recap.statement_with_recap(None, recap.decode_recap(elsewhere))
    message = rebuild(issued.message, statement=statement, resources=[elsewhere])
    assert await grant(service, wallet, message) == ""


async def test_scope_escalation_via_restricted_or_case_folded_abilities(
    service: Service, wallet: EthWallet
):
    issued = await service.challenge(wallet.caip10(), "escrow:read escrow:release")
    capability = Capability(
        {
            AUDIENCE: {
                "escrow/read": ({},),
                "escrow/release": ({"max": "1"},),
                "Escrow/Release": ({},),
            }
        }
    )
    resource = recap.encode_capability(capability)
    statement = recap.statement_with_recap(None, capability)
    message = rebuild(issued.message, statement=statement, resources=[resource])
    assert await grant(service, wallet, message) == "escrow:read"


async def test_policy_caps_what_was_offered(service: Service, wallet: EthWallet):
    with pytest.raises(InvalidScope) as refused:
        await service.challenge(wallet.caip10(), "admin:all")
    assert refused.value.code == "scope_not_allowed"


@pytest.mark.parametrize("scope", ["ESCROW:READ", "escrow:*", "escrow:read2", "escrow"])
async def test_scopes_match_exactly(service: Service, wallet: EthWallet, scope: str):
    with pytest.raises(InvalidScope) as refused:
        await service.challenge(wallet.caip10(), scope)
    assert refused.value.code == "unknown_scope"


# --- there is no refresh grant ----------------------------------------------------------


@pytest.fixture
def client(settings: Settings, keyset: KeySet, clock: FrozenClock) -> Iterator[TestClient]:
    app = create_app(settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def test_scope_escalation_via_refresh_grant_is_refused(client: TestClient):
    # Without a session there is nothing to refresh (tests/test_refresh.py has the rest).
    body = {"grant_type": "refresh_token", "refresh_token": "x", "scope": "admin:all"}
    for response in (client.post("/v1/token", json=body), client.post("/v1/token", data=body)):
        assert response.status_code == 400
        assert "access_token" not in response.text


def test_token_response_carries_no_refresh_token(client: TestClient):
    wallet = EthWallet.create()
    issued = client.post("/v1/challenge", json={"account": wallet.caip10()}).json()
    body = client.post(
        "/v1/token",
        json={"message": issued["message"], "signature": wallet.sign(issued["message"])},
    ).json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}


# --- ReCap capability objects round-trip ------------------------------------------------

json_leaves = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
abilities = st.from_regex(r"\A[a-z0-9._+-]{1,8}/[a-zA-Z0-9.*_+-]{1,8}\Z")
resources = st.sampled_from(["https://a.example", "did:key:z6Mk", "mailto:x@y.example", "urn:a:b"])
nota_benes = st.lists(
    st.dictionaries(st.text(max_size=6), json_values, max_size=3), max_size=2
).map(tuple)
capabilities = st.builds(
    Capability,
    st.dictionaries(
        resources,
        st.dictionaries(
            abilities,
            nota_benes,
            min_size=1,
            max_size=4,
        ),
        min_size=1,
        max_size=3,
    ),
    st.lists(st.from_regex(r"\A[A-Za-z0-9]{1,20}\Z"), max_size=2).map(tuple),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(capabilities)
def test_capability_object_round_trip(capability: Capability):
    try:
        resource = recap.encode_capability(capability)
    except MalformedMessage:
        assume(False)  # longer than a message resource may be
    decoded = recap.decode_recap(resource)
    assert decoded == capability
    assert recap.encode_capability(decoded) == resource
    assert recap.recap_sentence(decoded) == recap.recap_sentence(capability)


def test_capability_round_trip_example():
    capability = Capability(
        {
            "https://escrow.example": {
                "escrow/release": ({"max_amount": "100.00", "assets": ("USDC",)},),
                "escrow/read": ({},),
            }
        },
        ("bafy1",),
    )
    decoded = recap.decode_recap(recap.encode_capability(capability))
    assert decoded == capability
    assert list(decoded.attenuations["https://escrow.example"]) == ["escrow/read", "escrow/release"]
    assert recap.scopes_of(decoded, "https://escrow.example") == {"escrow:read"}
