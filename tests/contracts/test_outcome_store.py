"""Contract suite for ``OutcomeStore``: every backend passes the same tests.

Backends are parameters of ``new_store``: SQLite (a file in ``tmp_path``) and
PostgreSQL (a fresh schema per test on the session's server, see
``tests.conftest.postgres_dsn``); adding one is one ``pytest.param`` line in
``STORE_BACKENDS`` pointing at a factory.
The tests use only the Protocol (``start``/``close``/``record``/``flush``/
``query``/``get``/``ping``) and contain no backend branches.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol, cast

import pytest

from netcortex.config import StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.memory import OutcomeCursor, OutcomeQuery, OutcomeStore
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.errors import StoreError
from netcortex.memory.episodic.postgres import PostgresOutcomeStore
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.metrics import Counter, Registry
from netcortex.testing import make_event

#: ``(**options) -> OutcomeStore``: a new, unstarted store instance on the test's own
#: location; options: ``retention_days`` (the config key), ``retention_interval`` and
#: ``retention_batch`` (constructor arguments).
NewStore = Callable[..., OutcomeStore]


def _with_options(config: StoreConfig, options: dict[str, Any]) -> StoreConfig:
    days = options.pop("retention_days", None)
    return config if days is None else config.model_copy(update={"retention_days": days})


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> NewStore:
    config = StoreConfig(sqlite_path=tmp_path / "store" / "outcomes.db", flush_interval=0.005)
    return lambda **options: SqliteOutcomeStore(_with_options(config, options), **options)


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> NewStore:
    """A fresh schema per test on the session's PostgreSQL (``tests.conftest``)."""
    config = StoreConfig(
        backend="postgres",
        postgres_dsn=request.getfixturevalue("postgres_dsn"),
        postgres_schema=request.getfixturevalue("postgres_schema"),
        flush_interval=0.005,
    )
    return lambda **options: PostgresOutcomeStore(_with_options(config, options), **options)


STORE_BACKENDS = [
    pytest.param(_sqlite, id="sqlite"),
    pytest.param(_postgres, id="postgres"),
]

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


@pytest.fixture(params=STORE_BACKENDS)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> NewStore:
    """Factory of store instances of the backend under test, all on one location."""
    factory: Callable[[pytest.FixtureRequest, Path], NewStore] = request.param
    return factory(request, tmp_path)


@pytest.fixture
async def store(new_store: NewStore) -> AsyncIterator[OutcomeStore]:
    """A started store of the backend under test, closed after the test."""
    s = new_store()
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def outcome(
    n: int,
    *,
    handler_id: str = "link_down",
    kind: OutcomeKind = OutcomeKind.LOGGED,
    severity: Severity = Severity.HIGH,
    device: str = "r1",
    site: str | None = "branch-west",
    at: datetime | None = None,
) -> ReflexOutcome:
    """Outcome number ``n``, recorded ``n`` seconds after T0 unless ``at`` says otherwise."""
    event = make_event("link_down", device=device, interface=f"Gi1/0/{n}", payload={"n": n})
    made = ReflexOutcome.for_event(
        handler_id,
        event,
        severity=severity,
        kind=kind,
        summary=f"outcome {n} — ünïcode",
        details={"ifIndex": n, "ok": True, "note": None, "ratio": 0.5},
        diagnostic="diag" if kind is OutcomeKind.ERRORED else "",
        site=site,
    )
    return replace(made, recorded_at=at or T0 + timedelta(seconds=n), occurred_at=T0)


async def record_all(store: OutcomeStore, outcomes: list[ReflexOutcome]) -> None:
    """Record every outcome, then flush."""
    for o in outcomes:
        await store.record(o)
    await store.flush()


class TestWrites:
    async def test_round_trip(self, store: OutcomeStore) -> None:
        """A recorded outcome comes back from get and query equal in every field."""
        o = outcome(1)
        await record_all(store, [o])
        assert await store.get(o.outcome_id) == o
        assert await store.query(OutcomeQuery()) == [o]

    async def test_get_unknown_is_none(self, store: OutcomeStore) -> None:
        """get answers None for an id never recorded."""
        assert await store.get("0" * 32) is None

    async def test_idempotent_on_outcome_id(self, store: OutcomeStore) -> None:
        """Recording the same outcome id again (even changed) keeps one row, the first."""
        o = outcome(1)
        await record_all(store, [o, o, replace(o, summary="changed")])
        await record_all(store, [o])
        assert await store.query(OutcomeQuery()) == [o]

    async def test_concurrent_record_from_many_tasks(self, store: OutcomeStore) -> None:
        """Many tasks recording at once lose nothing and duplicate nothing."""
        outcomes = [outcome(i) for i in range(1200)]

        async def writer(part: list[ReflexOutcome]) -> None:
            for o in part:
                await store.record(o)
                await asyncio.sleep(0)

        async with asyncio.TaskGroup() as tg:
            for k in range(40):
                tg.create_task(writer(outcomes[k::40]))
                tg.create_task(writer(outcomes[k::40]))  # every outcome recorded twice
        await store.flush()
        stored = await store.query(OutcomeQuery(limit=5000))
        assert sorted(o.outcome_id for o in stored) == sorted(o.outcome_id for o in outcomes)

    async def test_flush_makes_records_visible_to_another_reader(
        self, store: OutcomeStore, new_store: NewStore
    ) -> None:
        """After flush, a separate store instance on the same location reads every record."""
        outcomes = [outcome(i) for i in range(50)]
        for o in outcomes:
            await store.record(o)
        await store.flush()
        reader = new_store()
        await reader.start()
        try:
            assert len(await reader.query(OutcomeQuery(limit=100))) == 50
        finally:
            await reader.close()

    async def test_flush_with_nothing_recorded_returns(self, store: OutcomeStore) -> None:
        """flush with nothing pending returns at once."""
        await asyncio.wait_for(store.flush(), 5)

    async def test_durable_after_close_and_reopen(self, new_store: NewStore) -> None:
        """Outcomes recorded before close (without an explicit flush) survive a reopen."""
        first = new_store()
        await first.start()
        outcomes = [outcome(i) for i in range(20)]
        for o in outcomes:
            await first.record(o)
        await first.close()
        second = new_store()
        await second.start()
        try:
            stored = await second.query(OutcomeQuery(limit=100))
            assert stored == sorted(outcomes, key=lambda o: o.recorded_at, reverse=True)
        finally:
            await second.close()


class TestQueries:
    @pytest.fixture
    async def filled(self, store: OutcomeStore) -> list[ReflexOutcome]:
        """Ten outcomes of varied handler, kind, severity and device, one second apart."""
        outcomes = [
            outcome(0, handler_id="link_down", severity=Severity.HIGH, device="r1"),
            outcome(1, handler_id="link_up", severity=Severity.INFO, device="r1"),
            outcome(2, handler_id="bgp_drop", severity=Severity.HIGH, device="r2"),
            outcome(3, handler_id="link_down", kind=OutcomeKind.SKIPPED, device="r2"),
            outcome(4, handler_id="security_webhook", severity=Severity.CRITICAL, device="mx"),
            outcome(5, handler_id="security_webhook", severity=Severity.WARN, device="mx"),
            outcome(6, handler_id="link_down", kind=OutcomeKind.ERRORED, severity=Severity.WARN),
            outcome(7, handler_id="link_down", kind=OutcomeKind.SUPPRESSED, device="r3"),
            outcome(8, handler_id="device_reboot", severity=Severity.WARN, device="r3"),
            outcome(9, handler_id="link_down", severity=Severity.HIGH, device="r1"),
        ]
        await record_all(store, outcomes)
        return outcomes

    @staticmethod
    def ns(outcomes: list[ReflexOutcome]) -> list[int]:
        """The ``n`` of each outcome (its details' ifIndex), in the given order."""
        return [o.details["ifIndex"] for o in outcomes]

    async def test_newest_first(self, store: OutcomeStore, filled: list[ReflexOutcome]) -> None:
        """Without filters every outcome comes back, newest recorded_at first."""
        assert self.ns(await store.query(OutcomeQuery())) == list(range(9, -1, -1))

    async def test_newest_first_regardless_of_record_order(self, store: OutcomeStore) -> None:
        """Order follows recorded_at, not the order of recording."""
        await record_all(store, [outcome(5), outcome(1), outcome(9), outcome(3)])
        assert self.ns(await store.query(OutcomeQuery())) == [9, 5, 3, 1]

    async def test_limit(self, store: OutcomeStore, filled: list[ReflexOutcome]) -> None:
        """limit returns at most that many, the newest ones."""
        assert self.ns(await store.query(OutcomeQuery(limit=3))) == [9, 8, 7]

    async def test_limit_below_one_returns_nothing(
        self, store: OutcomeStore, filled: list[ReflexOutcome]
    ) -> None:
        """A limit below one returns no rows."""
        assert await store.query(OutcomeQuery(limit=0)) == []

    async def test_filter_handler(self, store: OutcomeStore, filled: list[ReflexOutcome]) -> None:
        """handler_id keeps only that handler's outcomes."""
        result = await store.query(OutcomeQuery(handler_id="link_down"))
        assert self.ns(result) == [9, 7, 6, 3, 0]

    async def test_filter_severity(self, store: OutcomeStore, filled: list[ReflexOutcome]) -> None:
        """severity keeps outcomes of any of the given severities."""
        result = await store.query(OutcomeQuery(severity=[Severity.CRITICAL, Severity.INFO]))
        assert self.ns(result) == [4, 1]

    async def test_filter_kind(self, store: OutcomeStore, filled: list[ReflexOutcome]) -> None:
        """kind keeps outcomes of any of the given kinds."""
        result = await store.query(OutcomeQuery(kind=[OutcomeKind.ERRORED, OutcomeKind.SKIPPED]))
        assert self.ns(result) == [6, 3]

    async def test_filter_device(self, store: OutcomeStore, filled: list[ReflexOutcome]) -> None:
        """device keeps only that device's outcomes."""
        assert self.ns(await store.query(OutcomeQuery(device="r3"))) == [8, 7]

    async def test_filter_site(self, store: OutcomeStore) -> None:
        """site keeps only that site's outcomes (exact match; no site never matches)."""
        await record_all(
            store,
            [
                outcome(1, site="dc-north"),
                outcome(2, site="branch-west"),
                outcome(3, site="dc-north"),
                outcome(4, site=None),
                outcome(5, site="dc-north-2"),
            ],
        )
        assert self.ns(await store.query(OutcomeQuery(site="dc-north"))) == [3, 1]
        assert self.ns(await store.query(OutcomeQuery(site="branch-west"))) == [2]
        assert await store.query(OutcomeQuery(site="dc")) == []

    async def test_site_combines_with_severity_and_time(self, store: OutcomeStore) -> None:
        """site, several severities and a time range together keep only outcomes matching all."""
        await record_all(
            store,
            [
                outcome(1, site="dc-north", severity=Severity.CRITICAL),
                outcome(2, site="dc-north", severity=Severity.HIGH),
                outcome(3, site="dc-north", severity=Severity.INFO),
                outcome(4, site="branch-west", severity=Severity.CRITICAL),
                outcome(5, site="dc-north", severity=Severity.HIGH),
                outcome(6, site="dc-north", severity=Severity.WARN),
            ],
        )
        q = OutcomeQuery(
            site="dc-north",
            severity=[Severity.HIGH, Severity.CRITICAL],
            since=T0 + timedelta(seconds=2),
        )
        assert self.ns(await store.query(q)) == [5, 2]

    async def test_several_severities_and_kinds_keep_order_and_limit(
        self, store: OutcomeStore, filled: list[ReflexOutcome]
    ) -> None:
        """Several severities and several kinds (no other filter) still give the newest
        matches first, cut at limit, each outcome once (a repeated value changes nothing)."""
        q = OutcomeQuery(
            severity=[Severity.HIGH, Severity.WARN, Severity.HIGH],
            kind=[OutcomeKind.LOGGED, OutcomeKind.ERRORED],
        )
        assert self.ns(await store.query(q)) == [9, 8, 6, 5, 2, 0]
        assert self.ns(await store.query(replace(q, limit=4))) == [9, 8, 6, 5]

    async def test_empty_sequence_matches_nothing(
        self, store: OutcomeStore, filled: list[ReflexOutcome]
    ) -> None:
        """An empty severity or kind sequence matches no outcome (None means any)."""
        assert await store.query(OutcomeQuery(severity=[])) == []
        assert await store.query(OutcomeQuery(kind=[])) == []

    async def test_time_range(self, store: OutcomeStore, filled: list[ReflexOutcome]) -> None:
        """since is inclusive and until exclusive on recorded_at."""
        q = OutcomeQuery(since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=6))
        assert self.ns(await store.query(q)) == [5, 4, 3]
        assert self.ns(await store.query(OutcomeQuery(since=T0 + timedelta(seconds=8)))) == [9, 8]
        assert self.ns(await store.query(OutcomeQuery(until=T0 + timedelta(seconds=1)))) == [0]

    async def test_time_range_in_another_timezone(
        self, store: OutcomeStore, filled: list[ReflexOutcome]
    ) -> None:
        """Bounds given in another timezone mean the same instant."""
        plus2 = timezone(timedelta(hours=2))
        q = OutcomeQuery(since=(T0 + timedelta(seconds=7)).astimezone(plus2))
        assert self.ns(await store.query(q)) == [9, 8, 7]

    async def test_filters_combine(self, store: OutcomeStore, filled: list[ReflexOutcome]) -> None:
        """Several filters together keep only outcomes matching all of them."""
        q = OutcomeQuery(
            handler_id="link_down",
            severity=[Severity.HIGH],
            kind=[OutcomeKind.LOGGED],
            device="r1",
            since=T0 + timedelta(seconds=1),
        )
        assert self.ns(await store.query(q)) == [9]

    async def test_naive_time_is_refused(self, store: OutcomeStore) -> None:
        """A naive datetime bound raises StoreError rather than guessing a timezone."""
        with pytest.raises(StoreError, match="timezone"):
            await store.query(OutcomeQuery(since=datetime(2026, 1, 1)))


def newest_first(outcomes: list[ReflexOutcome]) -> list[ReflexOutcome]:
    """``outcomes`` in the store's order: recorded_at descending, then outcome_id descending."""
    return sorted(outcomes, key=lambda o: (o.recorded_at, o.outcome_id), reverse=True)


async def walk(store: OutcomeStore, query: OutcomeQuery) -> list[list[ReflexOutcome]]:
    """Every page of ``query``, each continuing after the previous one's last outcome."""
    pages: list[list[ReflexOutcome]] = []
    cursor: OutcomeCursor | None = None
    while True:
        page = await store.query(replace(query, before=cursor))
        if page:
            pages.append(page)
        if len(page) < query.limit:
            return pages
        cursor = OutcomeCursor.after(page[-1])
        assert len(pages) < 1000, "pagination does not end"


class TestPagination:
    @pytest.fixture
    async def crowded(self, store: OutcomeStore) -> list[ReflexOutcome]:
        """60 outcomes on only four distinct recorded_at instants (ties everywhere),
        with varied handler, severity and site."""
        handlers = ["link_down", "bgp_drop", "security_webhook"]
        severities = [Severity.HIGH, Severity.INFO, Severity.CRITICAL, Severity.WARN]
        outcomes = [
            outcome(
                n,
                handler_id=handlers[n % 3],
                severity=severities[n % 4],
                site="dc-north" if n % 5 else "branch-west",
                at=T0 + timedelta(seconds=n % 4),
            )
            for n in range(60)
        ]
        await record_all(store, outcomes)
        return outcomes

    async def test_order_breaks_ties_by_outcome_id_descending(
        self, store: OutcomeStore, crowded: list[ReflexOutcome]
    ) -> None:
        """Outcomes sharing one recorded_at come in outcome_id descending order."""
        got = await store.query(OutcomeQuery(limit=100))
        assert got == newest_first(crowded)

    @pytest.mark.parametrize("limit", [1, 7, 15, 59, 60, 61])
    async def test_walking_every_page_gives_each_outcome_once_in_order(
        self, store: OutcomeStore, crowded: list[ReflexOutcome], limit: int
    ) -> None:
        """Pages walked with OutcomeCursor.after(last) cover every outcome exactly once,
        in the newest-first order, even across many equal recorded_at values."""
        pages = await walk(store, OutcomeQuery(limit=limit))
        flat = [o for page in pages for o in page]
        assert flat == newest_first(crowded)
        assert all(len(page) == limit for page in pages[:-1])

    @pytest.mark.parametrize(
        "query",
        [
            pytest.param(OutcomeQuery(handler_id="bgp_drop", limit=4), id="handler"),
            pytest.param(OutcomeQuery(site="dc-north", limit=6), id="site"),
            pytest.param(
                OutcomeQuery(severity=[Severity.HIGH, Severity.CRITICAL], limit=5),
                id="two-severities",
            ),
            pytest.param(
                OutcomeQuery(
                    site="dc-north",
                    severity=[Severity.HIGH, Severity.CRITICAL],
                    since=T0 + timedelta(seconds=1),
                    limit=3,
                ),
                id="site-severities-since",
            ),
            pytest.param(
                OutcomeQuery(
                    kind=[OutcomeKind.LOGGED],
                    severity=[Severity.INFO, Severity.WARN],
                    until=T0 + timedelta(seconds=3),
                    limit=4,
                ),
                id="kind-severities-until",
            ),
        ],
    )
    async def test_pages_combine_with_filters(
        self, store: OutcomeStore, crowded: list[ReflexOutcome], query: OutcomeQuery
    ) -> None:
        """A cursor combined with filters walks exactly the filtered outcomes, in order."""
        everything = await store.query(replace(query, limit=1000))
        pages = await walk(store, query)
        assert [o for page in pages for o in page] == everything
        assert everything == newest_first(everything)
        assert len(pages) > 1  # the parameters really page

    async def test_before_is_strict_and_needs_no_stored_outcome(
        self, store: OutcomeStore, crowded: list[ReflexOutcome]
    ) -> None:
        """``before`` keeps outcomes strictly after the cursor in the order; the cursor need
        not name a stored outcome (the lowest id sorts before every id at that instant)."""
        at2 = T0 + timedelta(seconds=2)
        below = await store.query(OutcomeQuery(before=OutcomeCursor(at2, ""), limit=100))
        assert below == newest_first([o for o in crowded if o.recorded_at < at2])
        top = newest_first([o for o in crowded if o.recorded_at == at2])[0]
        after_top = await store.query(OutcomeQuery(before=OutcomeCursor.after(top), limit=100))
        assert after_top == newest_first(crowded)[newest_first(crowded).index(top) + 1 :]
        assert top not in after_top

    async def test_cursor_in_another_timezone_means_the_same_instant(
        self, store: OutcomeStore, crowded: list[ReflexOutcome]
    ) -> None:
        """A cursor whose recorded_at is in another timezone continues at the same place."""
        last = newest_first(crowded)[9]
        plus5 = timezone(timedelta(hours=5))
        moved = OutcomeCursor(last.recorded_at.astimezone(plus5), last.outcome_id)
        assert await store.query(OutcomeQuery(before=moved, limit=5)) == await store.query(
            OutcomeQuery(before=OutcomeCursor.after(last), limit=5)
        )

    async def test_naive_cursor_is_refused(self, store: OutcomeStore) -> None:
        """A cursor with a naive recorded_at raises StoreError rather than guessing."""
        with pytest.raises(StoreError, match="timezone"):
            await store.query(OutcomeQuery(before=OutcomeCursor(datetime(2026, 1, 1), "x")))

    def test_cursor_after_is_the_outcomes_position(self) -> None:
        """OutcomeCursor.after(o) is (o.recorded_at, o.outcome_id)."""
        o = outcome(3)
        assert OutcomeCursor.after(o) == OutcomeCursor(o.recorded_at, o.outcome_id)
        assert OutcomeCursor.after(o).recorded_at == T0 + timedelta(seconds=3)


class TestPing:
    async def test_ping_after_start(self, store: OutcomeStore) -> None:
        """A started store answers ping, also after writing."""
        await store.ping()
        await record_all(store, [outcome(1)])
        await store.ping()

    async def test_ping_before_start_raises(self, new_store: NewStore) -> None:
        """A store that was never started fails ping with StoreError."""
        with pytest.raises(StoreError, match="not started"):
            await new_store().ping()

    async def test_ping_after_close_raises(self, new_store: NewStore) -> None:
        """A closed store fails ping with StoreError."""
        s = new_store()
        await s.start()
        await s.ping()
        await s.close()
        with pytest.raises(StoreError, match="closed"):
            await s.ping()


class TestLifecycle:
    async def test_close_is_idempotent_and_safe_without_start(self, new_store: NewStore) -> None:
        """close works on a never-started store and can be called twice."""
        s = new_store()
        await s.close()
        await s.start()
        await s.close()
        await s.close()

    async def test_start_is_idempotent(self, new_store: NewStore) -> None:
        """start twice is harmless and the store works."""
        s = new_store()
        await s.start()
        await s.start()
        try:
            await record_all(s, [outcome(1)])
            assert len(await s.query(OutcomeQuery())) == 1
        finally:
            await s.close()

    async def test_record_after_close_raises(self, new_store: NewStore) -> None:
        """record on a closed store raises StoreError, never silently drops."""
        s = new_store()
        await s.start()
        await s.close()
        with pytest.raises(StoreError):
            await s.record(outcome(1))

    async def test_record_before_start_raises(self, new_store: NewStore) -> None:
        """record on a store that was never started raises StoreError."""
        with pytest.raises(StoreError):
            await new_store().record(outcome(1))


class _Prunable(Protocol):
    """Retention is not part of ``OutcomeStore``; every backend offers ``prune``."""

    async def prune(self, now: datetime | None = None) -> int: ...


class TestRetention:
    """``store.retention_days``: ``prune`` (called by a background task) deletes old rows."""

    NOW = T0 + timedelta(days=100)

    async def _started(self, new_store: NewStore, **options: Any) -> OutcomeStore:
        s = new_store(**options)
        await s.start()
        return s

    async def test_old_rows_go_new_rows_stay(self, new_store: NewStore) -> None:
        """Rows older than retention_days are deleted (in several batches); newer ones stay."""
        registry = Registry()
        s = await self._started(new_store, retention_days=30, retention_batch=2, metrics=registry)
        try:
            cutoff = self.NOW - timedelta(days=30)
            old = [outcome(n, at=cutoff - timedelta(seconds=n)) for n in range(1, 6)]
            new = [outcome(10, at=cutoff), outcome(11, at=self.NOW - timedelta(days=1))]
            await record_all(s, [*old, *new])
            assert await cast(_Prunable, s).prune(self.NOW) == len(old)
            counted = registry.get("netcortex_store_retention_deleted_total")
            assert isinstance(counted, Counter)
            assert counted.total() == len(old)
            kept = await s.query(OutcomeQuery(limit=100))
            assert {o.outcome_id for o in kept} == {o.outcome_id for o in new}
            for o in old:
                assert await s.get(o.outcome_id) is None
            assert await cast(_Prunable, s).prune(self.NOW) == 0  # nothing left to delete
        finally:
            await s.close()

    async def test_retention_zero_keeps_everything(self, new_store: NewStore) -> None:
        """retention_days=0 keeps every outcome, however old."""
        s = await self._started(new_store, retention_days=0, retention_interval=0.01)
        try:
            ancient = [outcome(n, at=T0 - timedelta(days=3650 + n)) for n in range(1, 4)]
            await record_all(s, ancient)
            assert await cast(_Prunable, s).prune(self.NOW) == 0
            assert len(await s.query(OutcomeQuery(limit=100))) == len(ancient)
        finally:
            await s.close()

    async def test_naive_now_raises(self, new_store: NewStore) -> None:
        """prune refuses a naive reference time."""
        s = await self._started(new_store, retention_days=30)
        try:
            with pytest.raises(StoreError):
                await cast(_Prunable, s).prune(datetime(2026, 1, 1))
        finally:
            await s.close()

    async def test_prune_on_closed_store_raises(self, new_store: NewStore) -> None:
        """prune on a store that is not open raises StoreError."""
        with pytest.raises(StoreError):
            await cast(_Prunable, new_store(retention_days=30)).prune(self.NOW)

    async def test_background_task_prunes(self, new_store: NewStore) -> None:
        """The background task deletes old rows by itself and leaves new ones."""
        s = await self._started(new_store, retention_days=1, retention_interval=0.02)
        try:
            now = datetime.now(UTC)
            old, new = outcome(1, at=now - timedelta(days=2)), outcome(2, at=now)
            await record_all(s, [old, new])
            async with asyncio.timeout(10):
                # a bounded poll of the store's state (the task runs on its own timer)
                while await s.get(old.outcome_id) is not None:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert await s.get(new.outcome_id) == new
        finally:
            await s.close()
