"""The redeem pipeline: every refusal has its code, and a failed proof burns nothing."""

from __future__ import annotations

import asyncio

import jwt
import pytest

from keyproof.errors import (
    BindingMismatch,
    InvalidAccount,
    InvalidScope,
    KeyproofError,
    MalformedMessage,
    NonceRejected,
    OutsideValidity,
    SignatureInvalid,
)
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.server.service import Service
from keyproof.tokens import verify_access_token

from conftest import START, FrozenClock
from wallets import EthWallet


@pytest.fixture
def wallet() -> EthWallet:
    return EthWallet.create()


def verify(settings: Settings, keyset: KeySet, token: str) -> dict[str, object]:
    return verify_access_token(
        token,
        keys=keyset.public_keys(),
        issuer=settings.issuer,
        audience=settings.audiences[0],
        now=START,
    )


async def test_login_issues_token_for_canonical_account(
    service: Service, wallet: EthWallet, settings: Settings, keyset: KeySet
):
    challenge = await service.challenge(wallet.caip10().lower(), "escrow:read")
    assert challenge.account == wallet.caip10()
    assert wallet.address in challenge.message
    token = await service.redeem(challenge.message, wallet.sign(challenge.message))
    claims = verify(settings, keyset, token.token)
    assert claims["sub"] == wallet.caip10()
    assert claims["scope"] == "escrow:read"
    assert claims["exp"] - claims["iat"] == settings.token_ttl
    assert jwt.get_unverified_header(token.token)["typ"] == "at+jwt"


async def test_replay_is_refused_as_used(service: Service, wallet: EthWallet):
    challenge = await service.challenge(wallet.caip10())
    signature = wallet.sign(challenge.message)
    await service.redeem(challenge.message, signature)
    with pytest.raises(NonceRejected) as refused:
        await service.redeem(challenge.message, signature)
    assert refused.value.code == "nonce_used"
    assert refused.value.status == 401


async def test_bad_signature_leaves_nonce_redeemable(
    service: Service, wallet: EthWallet, settings: Settings, keyset: KeySet
):
    challenge = await service.challenge(wallet.caip10())
    intruder = EthWallet.create()
    with pytest.raises(SignatureInvalid):
        await service.redeem(challenge.message, intruder.sign(challenge.message))
    token = await service.redeem(challenge.message, wallet.sign(challenge.message))
    assert verify(settings, keyset, token.token)["sub"] == wallet.caip10()


async def test_unknown_nonce(service: Service, wallet: EthWallet):
    challenge = await service.challenge(wallet.caip10())
    forged = challenge.message.replace(challenge.nonce, "a" * 32)
    with pytest.raises(NonceRejected) as refused:
        await service.redeem(forged, wallet.sign(forged))
    assert refused.value.code == "nonce_unknown"


@pytest.mark.parametrize(
    ("original", "replacement", "code"),
    [
        ("127.0.0.1:8000 wants", "evil.example wants", "domain_mismatch"),
        ("127.0.0.1:8000 wants", "https://127.0.0.1:8000 wants", "domain_mismatch"),
        ("URI: http://127.0.0.1:8000", "URI: https://evil.example", "uri_mismatch"),
        ("Chain ID: 1", "Chain ID: 137", "chain_mismatch"),
    ],
    ids=["wrong_domain", "wrong_scheme", "wrong_uri", "wrong_chain"],
)
async def test_field_differs_from_binding(
    service: Service, wallet: EthWallet, original: str, replacement: str, code: str
):
    challenge = await service.challenge(wallet.caip10())
    assert original in challenge.message
    altered = challenge.message.replace(original, replacement)
    with pytest.raises(BindingMismatch) as refused:
        await service.redeem(altered, wallet.sign(altered))
    assert refused.value.code == code
    token = await service.redeem(challenge.message, wallet.sign(challenge.message))
    assert token.claims["sub"] == wallet.caip10()


async def test_other_address_in_message_is_refused(service: Service, wallet: EthWallet):
    challenge = await service.challenge(wallet.caip10())
    other = EthWallet.create()
    altered = challenge.message.replace(wallet.address, other.address)
    with pytest.raises(BindingMismatch) as refused:
        await service.redeem(altered, other.sign(altered))
    assert refused.value.code == "account_mismatch"


async def test_expired_message(service: Service, wallet: EthWallet, clock: FrozenClock):
    challenge = await service.challenge(wallet.caip10())
    shorter = challenge.message.replace(
        "Expiration Time: 2027-01-15T08:05:00Z", "Expiration Time: 2027-01-15T08:01:00Z"
    )
    assert shorter != challenge.message
    clock.advance(60)
    with pytest.raises(OutsideValidity) as refused:
        await service.redeem(shorter, wallet.sign(shorter))
    assert refused.value.code == "message_expired"


async def test_expired_challenge_is_gone(service: Service, wallet: EthWallet, clock: FrozenClock):
    challenge = await service.challenge(wallet.caip10())
    clock.advance(Settings.challenge_ttl)
    with pytest.raises(NonceRejected) as refused:
        await service.redeem(challenge.message, wallet.sign(challenge.message))
    assert refused.value.code == "nonce_unknown"


async def test_not_yet_valid_message(service: Service, wallet: EthWallet):
    challenge = await service.challenge(wallet.caip10())
    not_before = "Not Before: 2027-01-15T08:02:00Z"
    lines = challenge.message.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("Expiration Time:")) + 1
    altered = "\n".join([*lines[:at], not_before, *lines[at:]])
    with pytest.raises(OutsideValidity) as refused:
        await service.redeem(altered, wallet.sign(altered))
    assert refused.value.code == "message_not_yet_valid"


@pytest.mark.parametrize(
    ("issued_at", "valid"),
    [
        ("2027-01-15T08:01:00Z", True),  # 60 s ahead: within the default skew
        ("2027-01-15T08:01:01Z", False),  # beyond the skew
        ("2027-01-15T07:58:59Z", False),  # older than the challenge
    ],
    ids=["future_within_skew", "future_beyond_skew", "before_challenge"],
)
async def test_issued_at_window(service: Service, wallet: EthWallet, issued_at: str, valid: bool):
    challenge = await service.challenge(wallet.caip10())
    original = "Issued At: 2027-01-15T08:00:00Z"
    altered = challenge.message.replace(original, f"Issued At: {issued_at}")
    assert altered != challenge.message
    if valid:
        assert (await service.redeem(altered, wallet.sign(altered))).claims
        return
    with pytest.raises(OutsideValidity) as refused:
        await service.redeem(altered, wallet.sign(altered))
    assert refused.value.code == "issued_at_invalid"


async def test_concurrent_redeems_yield_one_token(service: Service, wallet: EthWallet):
    challenge = await service.challenge(wallet.caip10())
    signature = wallet.sign(challenge.message)
    results = await asyncio.gather(
        *(service.redeem(challenge.message, signature) for _ in range(50)),
        return_exceptions=True,
    )
    tokens = [r for r in results if not isinstance(r, BaseException)]
    refusals = [r for r in results if isinstance(r, NonceRejected)]
    assert len(tokens) == 1
    assert len(refusals) == 49


@pytest.mark.parametrize(
    ("account", "error", "code"),
    [
        ("eip155:1:0x123", InvalidAccount, "invalid_account"),
        ("eip155:5:0x" + "11" * 20, InvalidAccount, "unsupported_account"),
        ("cosmos:hub:cosmos1abc", InvalidAccount, "unsupported_account"),
        ("not an account", InvalidAccount, "invalid_account"),
    ],
    ids=["short_address", "chain_not_allowed", "unknown_namespace", "garbage"],
)
async def test_challenge_refuses_bad_accounts(
    service: Service, account: str, error: type[KeyproofError], code: str
):
    with pytest.raises(error) as refused:
        await service.challenge(account)
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("scope", "code"),
    [
        ("nope:nothing", "unknown_scope"),
        ("Escrow:Read", "unknown_scope"),
        ("admin:all", "scope_not_allowed"),
        ("escrow:*", "unknown_scope"),
    ],
    ids=["unknown", "case_differs", "not_granted", "wildcard_request"],
)
async def test_challenge_refuses_bad_scopes(
    service: Service, wallet: EthWallet, scope: str, code: str
):
    with pytest.raises(InvalidScope) as refused:
        await service.challenge(wallet.caip10(), scope)
    assert refused.value.code == code


async def test_challenge_refuses_foreign_audience(service: Service, wallet: EthWallet):
    with pytest.raises(InvalidScope) as refused:
        await service.challenge(wallet.caip10(), audience="https://other.example")
    assert refused.value.code == "invalid_audience"


async def test_oversized_message_refused_before_parsing(service: Service):
    with pytest.raises(MalformedMessage) as refused:
        await service.redeem("x" * 9000, "0x00")
    assert refused.value.code == "message_too_long"


async def test_scheme_of_the_configured_uri_is_accepted(service: Service, wallet: EthWallet):
    challenge = await service.challenge(wallet.caip10())
    with_scheme = challenge.message.replace("127.0.0.1:8000 wants", "http://127.0.0.1:8000 wants")
    assert with_scheme != challenge.message
    token = await service.redeem(with_scheme, wallet.sign(with_scheme))
    assert token.claims["sub"] == wallet.caip10()
