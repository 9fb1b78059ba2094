"""A store that fails mid-request: no step of a login or an action leaves two outcomes.

A real store (memory, SQLite, PostgreSQL) is wrapped so that its Nth call raises ``Unavailable``,
either before the command runs (connection refused) or after (reply lost). For every
N up to the number of store calls of one challenge and redeem, the request fails
closed with ``store_unavailable`` and a retry gives at most one token, exactly one
unless the failure struck after the nonce was consumed. A call is either one batch,
run by the store as one unit, or one operation of a batch run one call at a time.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from keyproof.actions import Action, ActionVerifier
from keyproof.errors import KeyproofError, Unavailable
from keyproof.server.components import build_service
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.server.service import Service
from keyproof.stores.base import Kind, Store
from keyproof.stores.memory import MemoryStore
from keyproof.stores.ops import Op, Outcome, run_each
from keyproof.stores.postgres import PostgresStore
from keyproof.stores.sqlite import SqliteStore

from conftest import FrozenClock
from wallets import EthWallet

_T = TypeVar("_T")


class FlakyStore(Store):
    """A real store that fails its ``fail_at``-th call (1-based) once, with ``Unavailable``.

    ``lost_reply`` decides whether that call reached the store first: False is a
    connection refused (nothing happened), True a reply lost after the command ran.
    """

    def __init__(self, inner: Store, *, batches: bool = False) -> None:
        self.inner = inner
        self.batches = batches
        self.calls: list[str] = []
        self.fail_at = 0
        self.lost_reply = False

    def arm(self, fail_at: int, *, lost_reply: bool) -> None:
        self.calls, self.fail_at, self.lost_reply = [], fail_at, lost_reply

    async def _call(self, name: str, operation: Coroutine[Any, Any, _T]) -> _T:
        self.calls.append(name)
        if len(self.calls) != self.fail_at:
            return await operation
        if self.lost_reply:
            await operation
        else:
            operation.close()
        raise Unavailable("store_unavailable", f"injected failure on call {self.fail_at}")

    async def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        return await self._call(f"add {kind}", self.inner.add(kind, key, value, ttl))

    async def get(self, kind: Kind, key: str) -> bytes | None:
        return await self._call(f"get {kind}", self.inner.get(kind, key))

    async def take(self, kind: Kind, key: str) -> bytes | None:
        return await self._call(f"take {kind}", self.inner.take(kind, key))

    async def hit(self, kind: Kind, key: str, window: float) -> int:
        return await self._call(f"hit {kind}", self.inner.hit(kind, key, window))

    async def batch(self, ops: Sequence[Op]) -> Outcome:
        if not self.batches:
            return await run_each(self, ops)
        name = ", ".join(f"{type(op).__name__.lower()} {op.kind}" for op in ops)
        return await self._call(f"batch: {name}", self.inner.batch(ops))

    async def count(self, kind: Kind) -> int:
        return await self._call(f"count {kind}", self.inner.count(kind))

    async def ping(self) -> None:
        await self._call("ping", self.inner.ping())

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture(params=[False, True], ids=["per-operation", "batches"])
def batches(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def flaky(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock, batches: bool):
    inner: Store
    if request.param == "memory":
        inner = MemoryStore(clock=clock)
    elif request.param == "sqlite":
        inner = SqliteStore(tmp_path / "faults.db", clock=clock)
    else:  # its entries expire on the database's clock, long after these tests
        url, schema = (request.getfixturevalue(f"postgres_{n}") for n in ("url", "schema"))
        inner = PostgresStore(url, schema=schema)
    store = FlakyStore(inner, batches=batches)
    yield store
    await store.close()


CLIENT_IP = "198.51.100.40"


async def _login(service: Service, wallet: EthWallet) -> tuple[str, str]:
    issued = await service.challenge(wallet.caip10(), client_ip=CLIENT_IP)
    return issued.message, wallet.sign(issued.message)


async def _redeem(service: Service, message: str, signature: str) -> str | KeyproofError:
    try:
        return (await service.redeem(message, signature, client_ip=CLIENT_IP)).token
    except KeyproofError as refusal:
        return refusal


def _is_unavailable(outcome: object) -> bool:
    return isinstance(outcome, Unavailable) and outcome.code == "store_unavailable"


async def _calls_of_one_login(service: Service, flaky: FlakyStore) -> list[str]:
    flaky.arm(0, lost_reply=False)
    message, signature = await _login(service, EthWallet.create())
    assert isinstance(await _redeem(service, message, signature), str)
    return list(flaky.calls)


@pytest.mark.parametrize("lost_reply", [False, True], ids=["refused", "reply-lost"])
async def test_a_store_failure_at_any_step_never_gives_two_tokens(
    flaky: FlakyStore, settings: Settings, keyset: KeySet, clock: FrozenClock, lost_reply: bool
):
    service = build_service(settings, flaky, keyset, clock)
    steps = await _calls_of_one_login(service, flaky)
    # Rate counters, the challenge, its lookup and consume: one call each, or 3 batches.
    assert len(steps) >= (3 if flaky.batches else 6), steps
    for fail_at in range(1, len(steps) + 1):
        step = f"failure on call {fail_at} ({steps[fail_at - 1]}, lost_reply={lost_reply})"
        wallet = EthWallet.create()
        flaky.arm(fail_at, lost_reply=lost_reply)
        try:
            message, signature = await _login(service, wallet)
        except Unavailable as refusal:  # the failure hit the challenge: a fresh one works
            assert refusal.code == "store_unavailable", step
            assert len(flaky.calls) == fail_at, step
            flaky.arm(0, lost_reply=False)
            message, signature = await _login(service, wallet)
            first: str | KeyproofError = await _redeem(service, message, signature)
            assert isinstance(first, str), (step, first)
        else:
            first = await _redeem(service, message, signature)
            assert _is_unavailable(first), (step, first)
            assert len(flaky.calls) == fail_at, step
        flaky.arm(0, lost_reply=False)
        second = await _redeem(service, message, signature)
        third = await _redeem(service, message, signature)
        tokens = [o for o in (first, second, third) if isinstance(o, str)]
        consumed_before_failure = lost_reply and "take challenge" in steps[fail_at - 1]
        assert len(tokens) == (0 if consumed_before_failure else 1), (step, first, second, third)
        refusals = [o for o in (second, third) if not isinstance(o, str)]
        assert all(r.code == "nonce_used" for r in refusals), (step, refusals)
    assert isinstance(await _redeem(service, *await _login(service, EthWallet.create())), str)


@pytest.mark.parametrize("lost_reply", [False, True], ids=["refused", "reply-lost"])
async def test_a_store_failure_recording_an_action_id_never_accepts_it_twice(
    flaky: FlakyStore, clock: FrozenClock, lost_reply: bool
):
    verifier = ActionVerifier(flaky, service="Acme Escrow", clock=clock)
    wallet = EthWallet.create()
    doc = {
        "service": "Acme Escrow",
        "audience": "https://auth.keyproof.test",
        "chain": "eip155:1",
        "type": "escrow.release",
        "object": "escrow-7",
        "id": "7b1f0c2e9d4a4f6b8c3e5a1d2f4b6c8e",
        "deadline": int(clock()) + 600,
    }
    signature = wallet.sign_typed_data(Action.parse(doc).typed_data())
    claims = {"sub": wallet.caip10(), "aud": "https://auth.keyproof.test", "jti": "j"}

    async def verify() -> str:
        try:
            await verifier.verify(
                doc, signature, claims=claims, action_type="escrow.release", object_id="escrow-7"
            )
        except KeyproofError as refusal:
            return refusal.code
        return "accepted"

    flaky.arm(1, lost_reply=lost_reply)
    assert await verify() == "store_unavailable"
    assert flaky.calls == ["add action"]
    flaky.arm(0, lost_reply=False)
    outcomes = [await verify(), await verify()]
    # The id was recorded before the reply was lost: it stays used, fail closed.
    expected = "action_replayed" if lost_reply else "accepted"
    assert outcomes == [expected, "action_replayed"]
