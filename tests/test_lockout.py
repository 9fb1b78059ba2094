"""A stranger flooding the challenge endpoint cannot lock an account's owner, or everyone, out.

The attacker knows the victim's (public) address and has many IPv4 addresses and an
IPv6 /48 (65 536 /64s). Whatever it sends, the victim, on a network of its own, gets a
challenge and signs in, and the store holds no more than the limits allow: the same
flood is run against every store backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from keyproof.errors import RateLimited
from keyproof.server.components import build_service
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.server.service import Service
from keyproof.stores.base import Kind, Store
from keyproof.stores.memory import MemoryStore
from keyproof.stores.redis import RedisStore
from keyproof.stores.sqlite import SqliteStore
from keyproof.testing import KeyproofServer

from conftest import FrozenClock
from wallets import EthWallet

VICTIM_IP = "203.0.113.7"
ATTACK_V4 = [f"198.51.{i // 256}.{i % 256}" for i in range(300)]
ATTACK_V6 = [f"2001:db8:bad:{i:x}::1" for i in range(1500)]  # 1500 /64s of one /48
CAP = 200  # max_challenges: small, so that the flood is far past it
PER_NETWORK = 400  # challenge_limit_per_network, below the number of /64s


async def _ask(service: Service, account: str, client_ip: str) -> bool:
    """One challenge request of the attacker; True if it was served."""
    with contextlib.suppress(RateLimited):
        await service.challenge(account, client_ip=client_ip)
        return True
    return False


async def _sign_in(service: Service, wallet: EthWallet, client_ip: str) -> None:
    issued = await service.challenge(wallet.caip10(), client_ip=client_ip)
    token = await service.redeem(issued.message, wallet.sign(issued.message), client_ip=client_ip)
    assert token.claims["sub"] == wallet.caip10()


# --- one account -------------------------------------------------------------------------


async def test_stranger_asking_challenges_for_an_account_cannot_lock_its_owner_out(
    service: Service,
):
    victim = EthWallet.create()
    served = [await _ask(service, victim.caip10(), "198.51.100.66") for _ in range(200)]
    await _sign_in(service, victim, VICTIM_IP)
    assert served.count(True) == Settings().challenge_limit_per_ip  # the stranger's own budget


async def test_strangers_filling_an_accounts_outstanding_challenges_cannot_lock_its_owner_out(
    service: Service, clock: FrozenClock
):
    victim = EthWallet.create()
    served = 0
    for _ in range(4):  # 4 minutes < challenge_ttl: every challenge is still outstanding
        for client_ip in ATTACK_V4[:20]:
            served += await _ask(service, victim.caip10(), client_ip)
        clock.advance(61)
    await _sign_in(service, victim, VICTIM_IP)
    assert served == 80


# --- everyone: the global cap ------------------------------------------------------------


def _flood_settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings, max_challenges=CAP, challenge_limit_per_network=PER_NETWORK
    )


async def _flood(service: Service, v4: list[str] = ATTACK_V4, v6: list[str] = ATTACK_V6) -> int:
    """Interleaved requests from every attacker network, each for a fresh account."""
    served = 0
    for i in range(max(len(v4) * 5, len(v6))):
        account = f"eip155:1:0x{secrets.token_hex(20)}"
        for sources in (v4, v6):
            if sources:
                served += await _ask(service, account, sources[i % len(sources)])
    return served


@pytest.mark.parametrize(
    ("v4", "v6"),
    [(ATTACK_V4, []), ([], ATTACK_V6), (ATTACK_V4, ATTACK_V6)],
    ids=["many_ipv4_addresses", "ipv6_48_of_64s", "both"],
)
async def test_flood_past_the_global_cap_spares_the_victim(
    settings: Settings, keyset: KeySet, clock: FrozenClock, v4: list[str], v6: list[str]
):
    store = MemoryStore(clock=clock)
    service = build_service(_flood_settings(settings), store, keyset, clock)
    victim = EthWallet.create()
    served = await _flood(service, v4, v6)
    await _sign_in(service, victim, VICTIM_IP)
    # Past the cap each attacker network (an IPv4 address, the /48) got exactly one more,
    assert served == CAP + len(v4) + (1 if v6 else 0)
    # and so did the victim's: a second challenge waits for the window.
    with pytest.raises(RateLimited) as refused:
        await service.challenge(victim.caip10(), client_ip=VICTIM_IP)
    assert refused.value.code == "too_many_challenges"
    clock.advance(settings.challenge_ttl)
    await _sign_in(service, victim, VICTIM_IP)
    await _sign_in(service, victim, VICTIM_IP)


# --- the store stays bounded under the same flood ----------------------------------------


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def flooded_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[Store]:
    if request.param == "memory":
        store: Store = MemoryStore(clock=clock)
    elif request.param == "sqlite":
        store = SqliteStore(tmp_path / "flood.db", clock=clock)
    else:
        store = RedisStore(
            request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix")
        )
    yield store
    await store.close()


def _counter_bound() -> int:
    """Counters one window of the flood creates; none depends on the number of requests.

    Per IPv4 address its rate and its one challenge under pressure; for the /48 the same
    two, plus a rate counter for each /64 the network limit let through; the global count.
    """
    return 2 * len(ATTACK_V4) + 2 + PER_NETWORK + 1


@pytest.mark.slow
async def test_store_stays_bounded_under_a_flood_that_spares_the_victim(
    settings: Settings, keyset: KeySet, clock: FrozenClock, flooded_store: Store, tmp_path: Path
):
    service = build_service(_flood_settings(settings), flooded_store, keyset, clock)
    victim = EthWallet.create()
    await _flood(service)
    await _sign_in(service, victim, VICTIM_IP)
    challenges = await flooded_store.count(Kind.CHALLENGE)
    counters = await flooded_store.count(Kind.COUNTER)
    assert challenges == CAP + len(ATTACK_V4) + 1
    assert counters == _counter_bound() + 2  # and the victim's rate and pressure counters

    # The same flood again, within the window, adds no entry at all.
    assert await _flood(service) == 0
    assert await flooded_store.count(Kind.CHALLENGE) == challenges
    assert await flooded_store.count(Kind.COUNTER) == counters
    assert await flooded_store.count(Kind.USED_NONCE) == 1
    if isinstance(flooded_store, SqliteStore):
        with closing(sqlite3.connect(tmp_path / "flood.db")) as db:
            rows = int(db.execute("SELECT count(*) FROM entries").fetchone()[0])
        assert rows == challenges + counters + 1


# --- over HTTP, against a real server behind a trusted proxy -----------------------------


@pytest.mark.slow
def test_victim_signs_in_over_http_while_strangers_flood_its_account(
    tmp_path: Path, server_log: list[Path]
):
    env = {"KEYPROOF_TRUSTED_PROXIES": "127.0.0.1", "KEYPROOF_MAX_CHALLENGES": "20"}
    victim = EthWallet.create()
    with (
        KeyproofServer(tmp_path / "data", env=env) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        server_log.append(server.log_path)

        def ask(client_ip: str) -> httpx.Response:
            return client.post(
                "/v1/challenge",
                json={"account": victim.caip10()},
                headers={"X-Forwarded-For": client_ip},
            )

        statuses = [ask(ip).status_code for ip in ATTACK_V4[:40] * 3 + ATTACK_V6[:60]]
        issued = ask(VICTIM_IP)
        assert issued.status_code == 201
        message = issued.json()["message"]
        token = client.post(
            "/v1/token",
            json={"message": message, "signature": victim.sign(message)},
            headers={"X-Forwarded-For": VICTIM_IP},
        )
    assert token.status_code == 200
    assert statuses.count(201) == 20 + 40 + 1  # the cap, then one per attacker network
    assert set(statuses) == {201, 429}
