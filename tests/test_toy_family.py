"""A fifth account family, registered from this test, signs in and signs actions.

Nothing outside this file knows the ``toy`` family: the settings, the policy, the
service, the HTTP app and the action verifier all reach it through the family table.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import pytest
from nacl.signing import SigningKey
from starlette.testclient import TestClient

from keyproof.accounts import Account, ChallengeText, Family, register_family, unregister_family
from keyproof.actions import Action, verify_canonical_json_action
from keyproof.crypto import ed25519
from keyproof.crypto.encoding import decode_hex0x, decode_hex0x_key, encode_hex0x
from keyproof.errors import InvalidAccount
from keyproof.messages import _fields as f
from keyproof.messages._layout import Layout, Times
from keyproof.server.app import create_app
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.server.policy import Policy
from keyproof.stores.memory import MemoryStore

from conftest import START, FrozenClock

HEADER: Final = " wants you to sign in with your toy key:"
AUDIENCE: Final = "http://127.0.0.1:8000"


def _check_address(address: str) -> None:
    if not address.startswith("0x") or len(address) != 66:
        raise f.malformed("address", "a toy address is 0x and 64 hex digits")


_LAYOUT: Final = Layout(HEADER, _check_address, has_chain_id=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToyMessage(Times):
    scheme: str | None = None
    domain: str
    address: str
    statement: str | None = None
    uri: str
    version: str = "1"
    nonce: str
    issued_at: str
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _LAYOUT.check(self)

    def to_text(self) -> str:
        return _LAYOUT.render(self)


class ToyFamily(Family):
    """``toy:net:0x<ed25519 key>`` accounts signing hex ed25519 over a SIWE-like text."""

    namespace = "toy"
    header_suffix = HEADER

    def canonical_chain(self, reference: str) -> str:
        if reference != "net":
            raise InvalidAccount("unsupported_account", "the toy family has one chain")
        return reference

    def account(self, chain: str, address: str) -> Account:
        key = ed25519.check_public_key(decode_hex0x_key(address.lower(), length=32))
        return self.new_account(self.canonical_chain(chain), encode_hex0x(key), key)

    def render(self, challenge: ChallengeText) -> str:
        return ToyMessage(
            domain=challenge.domain,
            address=challenge.account.address,
            statement=challenge.statement,
            uri=challenge.uri,
            nonce=challenge.nonce,
            issued_at=challenge.issued_at,
            expiration_time=challenge.expiration_time,
            resources=challenge.resources,
        ).to_text()

    def parse(self, text: str) -> tuple[ToyMessage, Account]:
        message = _LAYOUT.parse(text, ToyMessage)
        return message, self.account("net", message.address)

    def verify(self, account: Account, message: bytes, signature: str) -> None:
        ed25519.verify(message, decode_hex0x(signature, length=64), account.public_key)

    def verify_action(self, account: Account, action: Action, signature: str) -> None:
        verify_canonical_json_action(self, account, action, signature)


@pytest.fixture
def toy() -> Iterator[ToyFamily]:
    family = ToyFamily()
    register_family(family)
    yield family
    unregister_family(family.namespace)


@pytest.fixture
def client(toy: ToyFamily, tmp_path, clock: FrozenClock) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        store="memory://",
        chains=("eip155:1", "toy:net"),
        policy=Policy(
            scopes=frozenset({"profile:read", "escrow:release"}),
            default=frozenset({"profile:read"}),
            namespaces={"toy": frozenset({"escrow:release"})},
        ),
    )
    keys = KeySet.load_or_create(tmp_path / "keys.json", clock)
    app = create_app(settings, store=MemoryStore(clock=clock), keys=keys, clock=clock)
    with TestClient(app, base_url=AUDIENCE) as test_client:
        yield test_client


def sign(key: SigningKey, data: bytes) -> str:
    return encode_hex0x(key.sign(data).signature)


def test_a_registered_family_signs_in_and_signs_actions(client: TestClient):
    key = SigningKey.generate()
    account = f"toy:net:{encode_hex0x(bytes(key.verify_key)).upper().replace('0X', '0x')}"
    issued = client.post("/v1/challenge", json={"account": account, "scope": "escrow:release"})
    assert issued.status_code == 201, issued.text
    challenge = issued.json()
    assert challenge["account"] == account.lower()
    assert challenge["message"].split("\n", 1)[0].endswith(HEADER)
    body = {"message": challenge["message"], "signature": sign(key, challenge["message"].encode())}
    token = client.post("/v1/token", json=body)
    assert token.status_code == 200, token.text
    access = token.json()["access_token"]

    action = Action.parse(
        {
            "service": "Toy Escrow",
            "audience": AUDIENCE,
            "chain": "toy:net",
            "type": "escrow.release",
            "object": "escrow-1",
            "id": secrets.token_hex(16),
            "deadline": START + 300,
        }
    )
    expect = {
        "service": "Toy Escrow",
        "audience": AUDIENCE,
        "type": "escrow.release",
        "object": "escrow-1",
        "scope": "escrow:release",
    }
    headers = {"Authorization": f"Bearer {access}"}
    stranger = sign(SigningKey.generate(), action.signing_input())
    refused = client.post(
        "/v1/actions/verify",
        json={"action": action.to_json(), "signature": stranger, "expect": expect},
        headers=headers,
    )
    assert refused.json()["reason"] == "action_signer_mismatch"
    verified = client.post(
        "/v1/actions/verify",
        json={
            "action": action.to_json(),
            "signature": sign(key, action.signing_input()),
            "expect": expect,
        },
        headers=headers,
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["signer"] == account.lower()


def test_a_forged_sign_in_of_the_registered_family_is_refused(client: TestClient):
    key = SigningKey.generate()
    account = f"toy:net:{encode_hex0x(bytes(key.verify_key))}"
    message = client.post("/v1/challenge", json={"account": account}).json()["message"]
    forged = sign(SigningKey.generate(), message.encode())
    refused = client.post("/v1/token", json={"message": message, "signature": forged})
    assert (refused.status_code, refused.json()["reason"]) == (401, "signature_invalid")


def test_the_family_is_gone_once_unregistered(toy: ToyFamily, tmp_path):
    unregister_family(toy.namespace)
    try:
        with pytest.raises(Exception, match="not supported"):
            Settings(data_dir=tmp_path, store="memory://", chains=("toy:net",))
    finally:
        register_family(toy)


def test_a_namespace_registers_once_and_shipped_families_stay(toy: ToyFamily):
    with pytest.raises(ValueError, match="already registered"):
        register_family(ToyFamily())
    with pytest.raises(ValueError, match="shipped"):
        unregister_family("eip155")
