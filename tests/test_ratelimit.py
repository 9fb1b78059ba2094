"""Abuse limits: per-IP and per-account rates, outstanding-challenge caps, client IPs."""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from keyproof.errors import ConfigurationError, NonceRejected, RateLimited, SignatureInvalid
from keyproof.server._clientip import ClientIpResolver
from keyproof.server.app import create_app
from keyproof.server.components import build_service
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.server.service import Service
from keyproof.stores.memory import MemoryStore

from conftest import FrozenClock
from wallets import EthWallet

SIG = "0x" + "11" * 65
LOW = {
    "rate_window": 60,
    "challenge_limit_per_ip": 5,
    "challenge_limit_per_network": 8,
    "failed_token_limit_per_ip": 4,
    "failed_token_limit_per_network": 6,
    "failed_token_limit_per_account": 2,
    "max_challenges": 1000,
}


def _service(settings: Settings, keyset: KeySet, clock: FrozenClock, **limits: int) -> Service:
    tuned = dataclasses.replace(settings, **{**LOW, **limits})
    return build_service(tuned, MemoryStore(clock=clock), keyset, clock)


def _bad_signature(wallet: EthWallet, message: str) -> str:
    return EthWallet.create().sign(message)


@pytest.fixture
def limited(settings: Settings, keyset: KeySet, clock: FrozenClock) -> Service:
    return _service(settings, keyset, clock)


# --- challenges ----------------------------------------------------------------------


async def test_challenges_per_ip_are_limited_and_reset_after_the_window(
    limited: Service, clock: FrozenClock
):
    for _ in range(5):
        await limited.challenge(EthWallet.create().caip10(), client_ip="192.0.2.1")
    with pytest.raises(RateLimited) as refused:
        await limited.challenge(EthWallet.create().caip10(), client_ip="192.0.2.1")
    assert (refused.value.code, refused.value.retry_after) == ("rate_limited", 60)
    await limited.challenge(EthWallet.create().caip10(), client_ip="192.0.2.2")
    clock.advance(61)
    await limited.challenge(EthWallet.create().caip10(), client_ip="192.0.2.1")


async def test_an_ipv6_48_is_limited_as_one_network(limited: Service):
    """65 536 /64s cost one address: the /48 has its own, larger limit."""
    for subnet in range(8):
        await limited.challenge(EthWallet.create().caip10(), client_ip=f"2001:db8:1:{subnet}::1")
    with pytest.raises(RateLimited) as refused:
        await limited.challenge(EthWallet.create().caip10(), client_ip="2001:db8:1:ffff::1")
    assert refused.value.code == "rate_limited"
    await limited.challenge(EthWallet.create().caip10(), client_ip="2001:db8:2::1")


async def test_past_the_global_cap_each_network_gets_one_challenge_per_ttl(
    settings: Settings, keyset: KeySet, clock: FrozenClock
):
    service = _service(settings, keyset, clock, challenge_limit_per_ip=100, max_challenges=7)
    for _ in range(7):
        await service.challenge(EthWallet.create().caip10(), client_ip="192.0.2.1")
    for client_ip in ("192.0.2.1", "192.0.2.2", "2001:db8:5:1::1"):
        await service.challenge(EthWallet.create().caip10(), client_ip=client_ip)
    for client_ip in ("192.0.2.1", "192.0.2.2", "2001:db8:5:2::1"):  # same /48 as above
        with pytest.raises(RateLimited) as refused:
            await service.challenge(EthWallet.create().caip10(), client_ip=client_ip)
        assert refused.value.code == "too_many_challenges"
        assert refused.value.retry_after == settings.challenge_ttl
    clock.advance(settings.challenge_ttl)
    for _ in range(7):
        await service.challenge(EthWallet.create().caip10(), client_ip="192.0.2.1")


async def test_in_process_callers_have_no_ip_limit(limited: Service):
    for _ in range(10):
        await limited.challenge(EthWallet.create().caip10())


# --- failed token attempts -----------------------------------------------------------


async def test_failed_token_attempts_per_ip_block_even_a_valid_proof(
    limited: Service, clock: FrozenClock
):
    wallet = EthWallet.create()
    victim = await limited.challenge(wallet.caip10(), client_ip="198.51.100.1")
    for _ in range(4):
        other = EthWallet.create()
        issued = await limited.challenge(other.caip10())
        with pytest.raises(SignatureInvalid):
            await limited.redeem(
                issued.message, _bad_signature(other, issued.message), client_ip="203.0.113.9"
            )
    good = wallet.sign(victim.message)
    with pytest.raises(RateLimited) as refused:
        await limited.redeem(victim.message, good, client_ip="203.0.113.9")
    assert refused.value.retry_after == 60
    token = await limited.redeem(victim.message, good, client_ip="198.51.100.1")
    assert token.claims["sub"] == wallet.caip10()


async def test_ip_block_lifts_after_the_window(limited: Service, clock: FrozenClock):
    template = (await limited.challenge(EthWallet.create().caip10())).message
    for _ in range(4):
        with pytest.raises(NonceRejected):
            await limited.redeem(_forged_message(template), SIG, client_ip="203.0.113.7")
    with pytest.raises(RateLimited):
        await limited.redeem(_forged_message(template), SIG, client_ip="203.0.113.7")
    clock.advance(61)
    with pytest.raises(NonceRejected):
        await limited.redeem(_forged_message(template), SIG, client_ip="203.0.113.7")


async def test_failed_attempts_per_account_count_across_ips(limited: Service):
    wallet = EthWallet.create()
    issued = await limited.challenge(wallet.caip10())
    for ip in ("203.0.113.1", "203.0.113.2"):
        with pytest.raises(SignatureInvalid):
            await limited.redeem(
                issued.message, _bad_signature(wallet, issued.message), client_ip=ip
            )
    with pytest.raises(RateLimited) as refused:
        await limited.redeem(
            issued.message, _bad_signature(wallet, issued.message), client_ip="203.0.113.3"
        )
    assert refused.value.retry_after == 60


async def test_strangers_failing_for_an_account_cannot_lock_its_owner_out(limited: Service):
    wallet = EthWallet.create()
    issued = await limited.challenge(wallet.caip10())
    for i in range(6):
        with pytest.raises((SignatureInvalid, RateLimited)):
            await limited.redeem(
                issued.message, _bad_signature(wallet, issued.message), client_ip=f"203.0.113.{i}"
            )
    token = await limited.redeem(issued.message, wallet.sign(issued.message), client_ip="1.2.3.4")
    assert token.claims["sub"] == wallet.caip10()


async def test_ipv6_clients_are_counted_per_64(limited: Service):
    template = (await limited.challenge(EthWallet.create().caip10())).message
    for host in range(1, 5):
        with pytest.raises(NonceRejected):
            await limited.redeem(_forged_message(template), SIG, client_ip=f"2001:db8::{host}")
    with pytest.raises(RateLimited):
        await limited.redeem(_forged_message(template), SIG, client_ip="2001:db8::ffff:1")
    with pytest.raises(NonceRejected):
        await limited.redeem(_forged_message(template), SIG, client_ip="2001:db8:0:1::1")


async def test_failed_attempts_from_an_ipv6_48_are_limited_as_one_network(limited: Service):
    template = (await limited.challenge(EthWallet.create().caip10())).message
    for subnet in range(6):
        with pytest.raises(NonceRejected):
            await limited.redeem(
                _forged_message(template), SIG, client_ip=f"2001:db8:9:{subnet}::1"
            )
    with pytest.raises(RateLimited):
        await limited.redeem(_forged_message(template), SIG, client_ip="2001:db8:9:ff::1")
    with pytest.raises(NonceRejected):
        await limited.redeem(_forged_message(template), SIG, client_ip="2001:db8:a::1")


async def test_forged_nonces_do_not_lock_out_an_account(limited: Service):
    wallet = EthWallet.create()
    issued = await limited.challenge(wallet.caip10())
    for i in range(3):
        with pytest.raises(NonceRejected):
            await limited.redeem(_forged_message(issued.message), SIG, client_ip=f"203.0.113.{i}")
    token = await limited.redeem(issued.message, wallet.sign(issued.message), client_ip="1.2.3.4")
    assert token.claims["sub"] == wallet.caip10()


async def test_replays_of_a_redeemed_message_are_not_failures(limited: Service):
    wallet = EthWallet.create()
    issued = await limited.challenge(wallet.caip10())
    signature = wallet.sign(issued.message)
    await limited.redeem(issued.message, signature, client_ip="203.0.113.3")
    for _ in range(10):
        with pytest.raises(NonceRejected) as refused:
            await limited.redeem(issued.message, signature, client_ip="203.0.113.3")
        assert refused.value.code == "nonce_used"


def _forged_message(template: str) -> str:
    """A well-formed message whose nonce was never issued."""
    nonce = next(line for line in template.splitlines() if line.startswith("Nonce: "))
    return template.replace(nonce, f"Nonce: {secrets.token_hex(16)}")


# --- over HTTP: 429 with Retry-After, client IP from trusted proxies ----------------------


@pytest.fixture
def proxied(tmp_path: Path, keyset: KeySet, clock: FrozenClock) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        store="memory://",
        trusted_proxies=("10.0.0.0/8",),
        challenge_limit_per_ip=2,
    )
    app = create_app(settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000", client=("10.1.2.3", 4000)) as client:
        yield client


def test_http_429_carries_retry_after_and_code(proxied: TestClient):
    def ask(forwarded: str) -> int:
        response = proxied.post(
            "/v1/challenge",
            json={"account": EthWallet.create().caip10()},
            headers={"X-Forwarded-For": forwarded},
        )
        if response.status_code == 429:
            assert response.headers["retry-after"] == "60"
            assert response.json()["reason"] == "rate_limited"
            assert response.json()["error"] == "slow_down"
        return response.status_code

    assert [ask("198.51.100.7") for _ in range(3)] == [201, 201, 429]
    # a spoofed left-hand entry does not change who the client is
    assert ask("1.1.1.1, 198.51.100.7") == 429
    assert ask("198.51.100.8") == 201


def test_audit_log_records_the_forwarded_client(proxied: TestClient, tmp_path: Path):
    wallet = EthWallet.create()
    issued = proxied.post("/v1/challenge", json={"account": wallet.caip10()}).json()
    body = {"message": issued["message"], "signature": wallet.sign(issued["message"])}
    headers = {"X-Forwarded-For": "203.0.113.50, 10.9.9.9"}
    assert proxied.post("/v1/token", json=body, headers=headers).status_code == 200
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["client_ip"] == "203.0.113.50"


def _scope(peer: str, *headers: tuple[str, str]) -> dict[str, object]:
    encoded = [(k.lower().encode(), v.encode()) for k, v in headers]
    return {"type": "http", "client": (peer, 1234), "headers": encoded}


@pytest.mark.parametrize(
    ("trusted", "header", "scope", "expected"),
    [
        ((), "x-forwarded-for", _scope("192.0.2.1", ("X-Forwarded-For", "1.1.1.1")), "192.0.2.1"),
        (
            ("10.0.0.0/8",),
            "x-forwarded-for",
            _scope("192.0.2.1", ("X-Forwarded-For", "1.1.1.1")),
            "192.0.2.1",
        ),
        (
            ("10.0.0.0/8",),
            "x-forwarded-for",
            _scope("10.0.0.1", ("X-Forwarded-For", "6.6.6.6, 7.7.7.7, 10.0.0.2")),
            "7.7.7.7",
        ),
        (
            ("10.0.0.0/8",),
            "x-forwarded-for",
            _scope("10.0.0.1", ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "7.7.7.7")),
            "7.7.7.7",
        ),
        (
            ("10.0.0.0/8",),
            "x-forwarded-for",
            _scope("10.0.0.1", ("X-Forwarded-For", "10.0.0.3, 10.0.0.2")),
            "10.0.0.3",
        ),
        (
            ("10.0.0.0/8",),
            "x-forwarded-for",
            _scope("10.0.0.1", ("X-Forwarded-For", "7.7.7.7, not-an-ip")),
            "10.0.0.1",
        ),
        (("10.0.0.0/8",), "x-forwarded-for", _scope("10.0.0.1"), "10.0.0.1"),
        (
            ("10.0.0.0/8",),
            "forwarded",
            _scope("10.0.0.1", ("Forwarded", 'for=6.6.6.6, for="[2001:db8::1]:443";proto=https')),
            "2001:db8::1",
        ),
        (
            ("10.0.0.0/8",),
            "forwarded",
            _scope("10.0.0.1", ("X-Forwarded-For", "7.7.7.7")),
            "10.0.0.1",
        ),
        (
            ("::1",),
            "x-forwarded-for",
            _scope("::1", ("X-Forwarded-For", "8.8.8.8:5353")),
            "8.8.8.8",
        ),
        ((), "x-forwarded-for", _scope("::ffff:192.0.2.9"), "192.0.2.9"),
        (
            ("10.0.0.0/8",),
            "x-forwarded-for",
            _scope("10.0.0.1", ("X-Forwarded-For", "fe80::1%" + "a" * 5000)),
            "fe80::1",
        ),
        (
            ("10.0.0.0/8",),
            "forwarded",
            _scope("10.0.0.1", ("Forwarded", 'for="[fe80::1%' + "b" * 5000 + ']:443"')),
            "fe80::1",
        ),
        ((), "x-forwarded-for", _scope("fe80::2%eth0"), "fe80::2"),
    ],
    ids=[
        "no_trusted_proxies",
        "untrusted_peer",
        "rightmost_untrusted_hop",
        "repeated_headers_joined",
        "all_trusted_takes_leftmost",
        "garbage_hop_stops_at_proxy",
        "trusted_peer_without_header",
        "rfc7239_forwarded",
        "other_header_ignored",
        "port_stripped",
        "ipv4_mapped",
        "zone_of_forwarded_hop_dropped",
        "zone_of_rfc7239_hop_dropped",
        "zone_of_peer_dropped",
    ],
)
def test_client_ip_resolution(
    trusted: tuple[str, ...], header: str, scope: dict[str, object], expected: str
):
    assert ClientIpResolver(trusted, header)(scope) == expected


def test_limit_settings_are_validated():
    with pytest.raises(ConfigurationError):
        Settings(challenge_limit_per_ip=0)
    with pytest.raises(ConfigurationError):
        Settings(forwarded_header="x-real-ip")
    loaded = Settings.load(env={"KEYPROOF_FAILED_TOKEN_LIMIT_PER_IP": "7"})
    assert loaded.failed_token_limit_per_ip == 7
