"""The ``DedupStore`` contract, run against every backend (``memory`` and ``jetstream_kv``).

No test branches on the backend. Each JetStream store gets its own bucket (a
unique namespace) on the session ``nats_server``. Expiry is waited for with a
deadline on the condition (poll ``seen`` until it says ``first`` again), never a
blind sleep, and the elapsed time is checked against the window both ways.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import structlog

from netcortex.contracts.memory import DedupResult, DedupStore
from netcortex.memory.episodic.dedup_jetstream import JetStreamDedupStore
from netcortex.memory.episodic.dedup_memory import InMemoryDedupStore

log = structlog.get_logger(__name__)

#: ``await new_store(shared=False)``: a started store of the backend under test;
#: ``shared=True`` gives one more store on the *same* state (a second worker) where
#: the backend is shared, else the same instance.
NewStore = Callable[..., Awaitable[DedupStore]]

WINDOW = 60.0
SHORT = 0.6  # seconds: the window of expiry tests
DEADLINE = 10.0  # seconds any expected state change may take
POLL = 0.05


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("jetstream_kv", id="jetstream_kv", marks=pytest.mark.nats),
    ]
)
async def new_store(request: pytest.FixtureRequest) -> AsyncIterator[NewStore]:
    """Factory of started stores of the backend under test; all closed at teardown."""
    made: list[DedupStore] = []
    namespace = "t" + uuid.uuid4().hex[:12]

    async def make(*, shared: bool = False) -> DedupStore:
        store: DedupStore
        if request.param == "memory":
            if shared and made:
                return made[0]  # one process: "another worker" is the same state
            store = InMemoryDedupStore()
        else:
            url = request.getfixturevalue("nats_server").url
            store = JetStreamDedupStore(nats_url=url, namespace=namespace, max_window=120.0)
        await store.start()
        made.append(store)
        return store

    yield make
    for store in reversed(made):
        await store.close()


@pytest.fixture
async def store(new_store: NewStore) -> DedupStore:
    """One started store of the backend under test."""
    return await new_store()


def key() -> str:
    """A fresh fact key (``event_class|target``) no other test uses."""
    return f"link_down|sw-{uuid.uuid4().hex[:8]}|Gi1/0/12"


async def seen_until_first(store: DedupStore, k: str, window: float) -> DedupResult:
    """Call ``seen`` every ``POLL`` s until it reports ``first`` (fail after ``DEADLINE``)."""
    async with asyncio.timeout(DEADLINE):
        n = 0
        while True:
            n += 1
            result = await store.seen(k, window, f"poll-{n}")
            if result.first:
                return result
            await asyncio.sleep(POLL)


class TestFirstAndDuplicates:
    async def test_first_call_creates_the_fact(self, store: DedupStore) -> None:
        """The first call for a key is first, count 1, with its own event id."""
        assert await store.seen(key(), WINDOW, "e1") == DedupResult(True, "e1", 1)

    async def test_duplicates_count_up_and_name_the_first_event(self, store: DedupStore) -> None:
        """Later calls in the window are not first, carry the first event id and count up."""
        k = key()
        await store.seen(k, WINDOW, "e1")
        results = [await store.seen(k, WINDOW, f"e{i}") for i in range(2, 6)]
        assert results == [DedupResult(False, "e1", i) for i in range(2, 6)]

    async def test_repeat_of_the_first_event_names_itself(self, store: DedupStore) -> None:
        """The first event seen again (a redelivery) is counted and named as the first
        event, which is how callers recognise it."""
        k = key()
        await store.seen(k, WINDOW, "e1")
        await store.seen(k, WINDOW, "e2")
        assert await store.seen(k, WINDOW, "e1") == DedupResult(False, "e1", 3)

    async def test_keys_are_independent(self, store: DedupStore) -> None:
        """Each key has its own first event and count."""
        a, b = key(), key()
        assert (await store.seen(a, WINDOW, "a1")).first
        assert (await store.seen(b, WINDOW, "b1")).first
        assert await store.seen(a, WINDOW, "a2") == DedupResult(False, "a1", 2)
        assert await store.seen(b, WINDOW, "b2") == DedupResult(False, "b1", 2)

    @pytest.mark.parametrize(
        "odd",
        [
            "",
            "link_down|sw1.north|Gi1/0/1 *>",
            "bgp_drop|r1|2001:db8::1",
            "ünïcode|✓|" + "x" * 50,
            "long|" + "y" * 5000,
        ],
        ids=["empty", "dots-wildcards", "ipv6", "unicode", "long"],
    )
    async def test_any_string_is_a_key(self, store: DedupStore, odd: str) -> None:
        """Keys with dots, wildcards, unicode, nothing or 5,000 characters work and stay
        distinct from their neighbours."""
        assert (await store.seen(odd, WINDOW, "o1")).first
        assert (await store.seen(odd + "!", WINDOW, "o2")).first
        assert await store.seen(odd, WINDOW, "o3") == DedupResult(False, "o1", 2)

    async def test_invalid_window_is_refused(self, store: DedupStore) -> None:
        """A window that is not positive is a ValueError, not a silent default."""
        with pytest.raises(ValueError, match="window"):
            await store.seen(key(), 0, "e1")


class TestExpiry:
    async def test_fact_is_first_again_after_its_window(self, store: DedupStore) -> None:
        """After ``window`` seconds from creation the next call is first again, count 1,
        and not before."""
        k = key()
        t0 = time.monotonic()
        assert (await store.seen(k, SHORT, "e1")).first
        again = await seen_until_first(store, k, SHORT)
        elapsed = time.monotonic() - t0
        assert elapsed >= SHORT - 0.02  # wall clock vs monotonic: a little slack
        assert again.count == 1
        assert again.first_event_id.startswith("poll-")
        assert await store.seen(k, SHORT, "after") == DedupResult(False, again.first_event_id, 2)

    async def test_duplicates_do_not_extend_the_window(self, store: DedupStore) -> None:
        """Duplicates arriving all along do not push expiry: the key is first again about
        ``window`` after creation."""
        k = key()
        t0 = time.monotonic()
        await store.seen(k, SHORT, "e1")
        await seen_until_first(store, k, SHORT)  # polls are duplicates all the way
        assert time.monotonic() - t0 < SHORT + 2.0


class TestAtomicity:
    async def test_concurrent_calls_have_one_first_and_distinct_counts(
        self, store: DedupStore
    ) -> None:
        """200 concurrent calls for a new key: exactly one first, counts exactly 1..200."""
        k = key()
        results = await asyncio.gather(*(store.seen(k, WINDOW, f"e{i}") for i in range(200)))
        firsts = [r for r in results if r.first]
        assert len(firsts) == 1
        assert sorted(r.count for r in results) == list(range(1, 201))
        assert {r.first_event_id for r in results} == {firsts[0].first_event_id}

    async def test_two_workers_share_one_state(self, new_store: NewStore) -> None:
        """Two stores on the same state (two workers): concurrent calls on both give one
        first in total and distinct counts 1..200."""
        one, two = await new_store(), await new_store(shared=True)
        k = key()
        assert (await one.seen(key(), WINDOW, "warm")).first  # both connected and ready
        calls = [(one if i % 2 else two).seen(k, WINDOW, f"e{i}") for i in range(200)]
        results = await asyncio.gather(*calls)
        assert sum(r.first for r in results) == 1
        assert sorted(r.count for r in results) == list(range(1, 201))
        assert await two.seen(k, WINDOW, "late") == DedupResult(
            False, next(r.first_event_id for r in results if r.first), 201
        )

    async def test_storm_of_10000_is_one_first(self, store: DedupStore) -> None:
        """10,000 identical calls in concurrent batches of 500: one first, final count
        10,000, every count used once."""
        k = key()
        started = time.perf_counter()
        counts: list[int] = []
        firsts = 0
        for b in range(20):
            batch = await asyncio.gather(*(store.seen(k, WINDOW, f"e{b}-{i}") for i in range(500)))
            firsts += sum(r.first for r in batch)
            counts.extend(r.count for r in batch)
        elapsed = time.perf_counter() - started
        log.info("dedup_storm", store=type(store).__name__, seconds=round(elapsed, 3))
        assert firsts == 1
        assert max(counts) == 10_000
        assert sorted(counts) == list(range(1, 10_001))

    async def test_storm_split_over_two_workers_is_one_first(self, new_store: NewStore) -> None:
        """10,000 identical calls alternating between two workers, in concurrent batches of
        500: one first in total, counts 1..10,000 each used once."""
        one, two = await new_store(), await new_store(shared=True)
        k = key()
        started = time.perf_counter()
        results: list[DedupResult] = []
        for b in range(20):
            calls = [(one if i % 2 else two).seen(k, WINDOW, f"e{b}-{i}") for i in range(500)]
            results.extend(await asyncio.gather(*calls))
        log.info("dedup_storm_two_workers", seconds=round(time.perf_counter() - started, 3))
        assert sum(r.first for r in results) == 1
        assert sorted(r.count for r in results) == list(range(1, 10_001))


class TestLifecycle:
    async def test_close_is_idempotent(self, new_store: NewStore) -> None:
        """``close`` twice raises nothing."""
        s = await new_store()
        await s.close()
        await s.close()

    async def test_start_is_idempotent(self, store: DedupStore) -> None:
        """A second ``start`` keeps the state."""
        k = key()
        await store.seen(k, WINDOW, "e1")
        await store.start()
        assert (await store.seen(k, WINDOW, "e2")).count == 2
