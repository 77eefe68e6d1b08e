"""Unit tests for ``InMemoryDedupStore`` specifics: exact expiry on an injected clock,
bounded size, eviction order and counting.

Behaviour every dedup store shares is in ``tests/contracts/test_dedup.py``.
"""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from netcortex.contracts.memory import DedupResult
from netcortex.memory.episodic.dedup_memory import InMemoryDedupStore
from netcortex.metrics import Registry


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def evictions(reg: Registry, reason: str) -> float:
    """``netcortex_dedup_evictions_total{backend="memory",reason=...}``."""
    return reg.counter("netcortex_dedup_evictions_total", "", ("backend", "reason")).value(
        backend="memory", reason=reason
    )


async def test_expiry_is_exactly_window_after_creation() -> None:
    """A key is a duplicate until ``window`` after its first event and first again at it."""
    clock = FakeClock()
    store = InMemoryDedupStore(clock=clock)
    assert (await store.seen("k", 10.0, "e1")).first
    clock.now += 9.999
    assert await store.seen("k", 10.0, "e2") == DedupResult(False, "e1", 2)
    clock.now += 0.001
    assert await store.seen("k", 10.0, "e3") == DedupResult(True, "e3", 1)


async def test_duplicates_do_not_extend_the_window() -> None:
    """Duplicates every second do not move the expiry of a 5 s fact."""
    clock = FakeClock()
    store = InMemoryDedupStore(clock=clock)
    await store.seen("k", 5.0, "e0")
    for i in range(1, 5):
        clock.now += 1.0
        assert not (await store.seen("k", 5.0, f"e{i}")).first
    clock.now += 1.0
    assert (await store.seen("k", 5.0, "e5")).first


async def test_capacity_evicts_the_oldest_live_key_and_counts_it() -> None:
    """At ``max_keys`` the oldest key goes (counted as ``capacity``, logged) and a later
    duplicate of it is first again: the documented cost of a too-small bound."""
    reg = Registry()
    store = InMemoryDedupStore(max_keys=3, metrics=reg, clock=FakeClock())
    for k in "abc":
        await store.seen(k, 60.0, f"{k}1")
    with capture_logs() as logs:
        await store.seen("d", 60.0, "d1")
    assert len(store) == 3
    assert evictions(reg, "capacity") == 1
    assert [e["event"] for e in logs] == ["dedup_key_evicted"]
    assert logs[0]["key"] == "a"
    assert (await store.seen("b", 60.0, "b2")).count == 2  # b survived
    assert (await store.seen("a", 60.0, "a2")).first  # a was forgotten


async def test_expired_keys_are_dropped_before_live_ones() -> None:
    """When full, expired keys at the old end make room for free (``expired``), no live
    key is evicted."""
    reg = Registry()
    clock = FakeClock()
    store = InMemoryDedupStore(max_keys=2, metrics=reg, clock=clock)
    await store.seen("old", 1.0, "o1")
    await store.seen("live", 60.0, "l1")
    clock.now += 2.0
    await store.seen("new", 60.0, "n1")
    assert evictions(reg, "capacity") == 0
    assert evictions(reg, "expired") == 1
    assert (await store.seen("live", 60.0, "l2")).count == 2


async def test_expired_keys_are_swept_as_new_keys_arrive() -> None:
    """Memory does not keep expired keys forever: new keys sweep them from the old end."""
    clock = FakeClock()
    store = InMemoryDedupStore(clock=clock)
    for i in range(100):
        await store.seen(f"k{i}", 1.0, "e")
    clock.now += 2.0
    for i in range(100):
        await store.seen(f"n{i}", 1.0, "e")
    assert len(store) == 100


async def test_size_never_exceeds_max_keys() -> None:
    """10,000 distinct keys through a 100-key store leave exactly 100 keys."""
    store = InMemoryDedupStore(max_keys=100, clock=FakeClock())
    for i in range(10_000):
        await store.seen(f"k{i}", 60.0, "e")
    assert len(store) == 100


async def test_metrics_count_firsts_and_duplicates() -> None:
    """``netcortex_dedup_seen_total`` splits firsts from duplicates; the key gauge follows."""
    reg = Registry()
    store = InMemoryDedupStore(metrics=reg)
    for i in range(5):
        await store.seen("k", 60.0, f"e{i}")
    seen = reg.counter("netcortex_dedup_seen_total", "", ("backend", "result"))
    assert seen.value(backend="memory", result="first") == 1
    assert seen.value(backend="memory", result="duplicate") == 4
    assert reg.gauge("netcortex_dedup_keys", "", ("backend",)).value(backend="memory") == 1


async def test_close_forgets_everything() -> None:
    """After ``close`` every key is new again."""
    store = InMemoryDedupStore()
    await store.seen("k", 60.0, "e1")
    await store.close()
    assert (await store.seen("k", 60.0, "e2")).first


def test_seen_now_is_the_same_contract_without_a_coroutine() -> None:
    """``seen_now`` gives the same answers synchronously."""
    store = InMemoryDedupStore()
    assert store.seen_now("k", 60.0, "e1") == DedupResult(True, "e1", 1)
    assert store.seen_now("k", 60.0, "e2") == DedupResult(False, "e1", 2)


@pytest.mark.parametrize("bad", [0, -5])
def test_max_keys_must_be_positive(bad: int) -> None:
    """``max_keys < 1`` is refused at construction."""
    with pytest.raises(ValueError, match="max_keys"):
        InMemoryDedupStore(max_keys=bad)


async def test_long_window_key_does_not_hide_expired_short_window_keys() -> None:
    """A live 300 s key created first does not shield expired 60 s keys behind it: they are
    swept, and at capacity the expired key makes room, not the live 300 s one."""
    reg = Registry()
    clock = FakeClock()
    store = InMemoryDedupStore(max_keys=2, metrics=reg, clock=clock)
    await store.seen("webhook", 300.0, "w1")
    await store.seen("link", 60.0, "l1")
    clock.now += 100.0  # link expired, webhook still live
    await store.seen("bgp", 60.0, "b1")
    assert evictions(reg, "capacity") == 0
    assert evictions(reg, "expired") == 1
    assert await store.seen("webhook", 300.0, "w2") == DedupResult(False, "w1", 2)


async def test_capacity_evicts_the_key_expiring_soonest_across_windows() -> None:
    """With only live keys, the one expiring soonest goes, whatever its creation order."""
    reg = Registry()
    clock = FakeClock()
    store = InMemoryDedupStore(max_keys=2, metrics=reg, clock=clock)
    await store.seen("long", 300.0, "a1")  # expires at +300
    clock.now += 10.0
    await store.seen("short", 60.0, "b1")  # expires at +70
    await store.seen("new", 60.0, "c1")
    assert evictions(reg, "capacity") == 1
    assert (await store.seen("long", 300.0, "a2")).count == 2
    assert (await store.seen("short", 60.0, "b2")).first


async def test_mixed_windows_stay_bounded_and_swept() -> None:
    """Thousands of keys over several windows and a moving clock never exceed max_keys,
    and expired keys of every window are swept as new keys arrive."""
    clock = FakeClock()
    store = InMemoryDedupStore(max_keys=50, clock=clock)
    windows = (5.0, 60.0, 300.0)
    for i in range(5_000):
        await store.seen(f"k{i}", windows[i % 3], "e")
        assert len(store) <= 50
        clock.now += 0.5
    clock.now += 301.0
    for i in range(200):
        await store.seen(f"n{i}", 5.0, "e")
    assert len(store) <= 50
    counts = [(await store.seen(f"n{i}", 5.0, "x")).count for i in range(150, 200)]
    assert counts == [2] * 50
