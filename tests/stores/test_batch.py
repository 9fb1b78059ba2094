"""The batch contract, run against every backend (specs/protocol.md §8).

A batch runs its operations in order with the meaning each has alone, and stops after
the first that refuses: that one has taken effect, the ones after it never run.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Add, Get, Hit, Op, Outcome, Take, run_each

from .harness import Backend

CHALLENGE, COUNTER, USED = Kind.CHALLENGE, Kind.COUNTER, Kind.USED_NONCE


async def test_an_empty_batch_does_nothing(backend: Backend) -> None:
    assert await backend.store.batch([]) == Outcome(())


async def test_operations_run_in_order_with_their_single_meaning(backend: Backend) -> None:
    store = backend.store
    await store.add(CHALLENGE, "taken", b"old", 60)
    outcome = await backend.store.batch(
        [
            Add(CHALLENGE, "n1", b"v\x00", 60),
            Add(CHALLENGE, "n1", b"other", 60),
            Get(CHALLENGE, "n1"),
            Take(CHALLENGE, "taken"),
            Take(CHALLENGE, "taken"),
            Hit(COUNTER, "ip", 60),
            Hit(COUNTER, "ip", 60),
            Get(COUNTER, "ip"),
            Get(CHALLENGE, "absent"),
        ]
    )
    assert outcome == Outcome((True, False, b"v\x00", b"old", None, 1, 2, b"2", None))
    assert await store.get(CHALLENGE, "n1") == b"v\x00"
    assert await store.hit(COUNTER, "ip", 60) == 3


async def test_a_hit_over_its_limit_stops_the_batch_and_stays_counted(backend: Backend) -> None:
    store = backend.store
    ops: list[Op] = [Hit(COUNTER, "net", 60, 2), Hit(COUNTER, "ip", 60, 5)]
    ops.append(Add(CHALLENGE, "n1", b"v", 60))
    assert await store.batch(ops) == Outcome((1, 1, True))
    assert await store.batch(ops) == Outcome((2, 2, False))
    assert await store.batch(ops) == Outcome((3,), refused=True)
    assert await store.get(COUNTER, "net") == b"3"
    assert await store.get(COUNTER, "ip") == b"2"


async def test_a_hit_at_its_limit_passes(backend: Backend) -> None:
    outcome = await backend.store.batch([Hit(COUNTER, "ip", 60, 1), Get(CHALLENGE, "x")])
    assert outcome == Outcome((1, None))


async def test_over_runs_only_past_the_limit_and_refuses_in_its_place(backend: Backend) -> None:
    store = backend.store
    network = Hit(COUNTER, "out:net", 60, 1)
    guarded: list[Op] = [Hit(COUNTER, "out:all", 60, 2, over=network), Add(CHALLENGE, "n", b"", 60)]
    assert (await store.batch(guarded)).values == (1, True)
    assert (await store.batch(guarded)).values == (2, False)
    assert await store.get(COUNTER, "out:net") is None
    # Past the cap: the network's one request passes, its next is refused.
    assert await store.batch(guarded) == Outcome((3, False))
    assert await store.batch(guarded) == Outcome((4,), refused=True)
    assert await store.get(COUNTER, "out:net") == b"2"
    assert await store.get(COUNTER, "out:all") == b"4"


async def test_a_counter_check_refuses_at_its_bound(backend: Backend) -> None:
    store = backend.store
    check: list[Op] = [Get(COUNTER, "fail", below=2), Get(CHALLENGE, "n1")]
    await store.add(CHALLENGE, "n1", b"binding", 60)
    assert await store.batch(check) == Outcome((None, b"binding"))
    await store.hit(COUNTER, "fail", 60)
    assert await store.batch(check) == Outcome((b"1", b"binding"))
    await store.hit(COUNTER, "fail", 60)
    assert await store.batch(check) == Outcome((b"2",), refused=True)
    assert await store.get(CHALLENGE, "n1") == b"binding"


async def test_entries_written_in_a_batch_expire(backend: Backend) -> None:
    store = backend.store
    await store.batch([Add(CHALLENGE, "n1", b"v", 5), Hit(COUNTER, "ip", 5)])
    await backend.expire(CHALLENGE, "n1", 5)
    await backend.expire(COUNTER, "ip", 5)
    outcome = await store.batch([Get(CHALLENGE, "n1"), Hit(COUNTER, "ip", 5)])
    assert outcome == Outcome((None, 1))


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
async def test_a_bad_duration_anywhere_fails_before_anything_runs(
    backend: Backend, bad: float
) -> None:
    store = backend.store
    for ops in (
        [Hit(COUNTER, "ip", 60), Add(CHALLENGE, "n1", b"v", bad)],
        [Hit(COUNTER, "ip", 60), Hit(COUNTER, "other", bad)],
        [Hit(COUNTER, "ip", 60, 1, over=Hit(COUNTER, "net", bad, 1))],
    ):
        with pytest.raises(ValueError, match="must be a positive finite number"):
            await store.batch(ops)
    assert await store.get(COUNTER, "ip") is None


@pytest.mark.parametrize(
    "hit",
    [
        Hit(COUNTER, "all", 60, over=Hit(COUNTER, "net", 60, 1)),
        Hit(COUNTER, "all", 60, 5, over=Hit(COUNTER, "net", 60)),
        Hit(COUNTER, "all", 60, 5, over=Hit(COUNTER, "net", 60, 1, Hit(COUNTER, "x", 60, 1))),
    ],
    ids=["no-limit", "over-without-limit", "nested-over"],
)
async def test_an_over_needs_limits_and_does_not_nest(backend: Backend, hit: Hit) -> None:
    with pytest.raises(ValueError, match="over"):
        await backend.store.batch([hit])
    assert await backend.store.get(COUNTER, "all") is None


async def test_concurrent_consumes_have_exactly_one_winner(backend: Backend) -> None:
    store = backend.store
    await store.add(CHALLENGE, "n1", b"binding", 60)
    consume: list[Op] = [Add(USED, "n1", b"1", 60), Take(CHALLENGE, "n1")]
    outcomes = await asyncio.gather(*(store.batch(consume) for _ in range(20)))
    assert sorted(o.bytes_at(1) or b"" for o in outcomes) == [b""] * 19 + [b"binding"]
    assert sum(o.values[0] is True for o in outcomes) == 1


async def test_concurrent_guarded_batches_respect_the_limit(backend: Backend) -> None:
    store = backend.store
    guarded = [Hit(COUNTER, "ip", 60, 5), Hit(COUNTER, "admitted", 60)]
    outcomes = await asyncio.gather(*(store.batch(guarded) for _ in range(20)))
    assert sum(not o.refused for o in outcomes) == 5
    assert await store.get(COUNTER, "admitted") == b"5"
    assert await store.get(COUNTER, "ip") == b"20"


async def test_the_one_call_per_operation_default_means_the_same(backend: Backend) -> None:
    store: Store = backend.store
    ops: list[Op] = [Hit(COUNTER, "ip", 60, 1), Add(CHALLENGE, "n1", b"v", 60)]
    assert await run_each(store, ops) == Outcome((1, True))
    assert await store.batch(ops) == Outcome((2,), refused=True)
    assert await run_each(store, ops) == Outcome((3,), refused=True)


async def test_an_outcome_gives_each_value_only_as_its_own_type(backend: Backend) -> None:
    outcome = await backend.store.batch(
        [Add(CHALLENGE, "typed", b"v", 60), Hit(COUNTER, "typed", 60), Get(CHALLENGE, "typed")]
    )
    assert (outcome.count_at(1), outcome.bytes_at(2)) == (1, b"v")
    for read, index in ((outcome.count_at, 0), (outcome.count_at, 2), (outcome.bytes_at, 1)):
        with pytest.raises(TypeError):
            read(index)
