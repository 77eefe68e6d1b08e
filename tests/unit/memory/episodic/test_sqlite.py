"""Unit tests for ``SqliteOutcomeStore`` specifics: WAL, batching, schema, query plans,
ping, error mapping.

Behaviour every store shares is in ``tests/contracts/test_outcome_store.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from netcortex.config import StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.memory import OutcomeCursor, OutcomeQuery
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.errors import StoreError
from netcortex.memory.episodic.sqlite import (
    _SELECT,
    SCHEMA_VERSION,
    SqliteOutcomeStore,
    _build_query,
    _Flush,
    _sqlite_errors,
)
from netcortex.metrics import Registry
from netcortex.testing import make_event


def _outcome(n: int = 0, **details: Any) -> ReflexOutcome:
    event = make_event("link_down", interface=f"Gi{n}")
    return ReflexOutcome.for_event(
        "link_down", event, severity=Severity.HIGH, summary=f"o{n}", details=details
    )


def _config(path: Path, **kw: Any) -> StoreConfig:
    return StoreConfig(sqlite_path=path, **kw)


def _raw_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute("SELECT count(*) FROM outcomes").fetchone()[0]
    conn.close()
    return count


_INDEXES_V3 = {
    "outcomes_recorded_id",
    "outcomes_handler",
    "outcomes_severity",
    "outcomes_kind",
    "outcomes_device",
    "outcomes_site",
}
#: The current layout (version 4, issue 6): plus ``(site, severity, recorded_us)``.
_INDEXES = _INDEXES_V3 | {"outcomes_site_severity"}


def _index_names(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outcomes'"
        " AND name NOT LIKE 'sqlite_autoindex%'"
    ).fetchall()
    return {r[0] for r in rows}


def _delete_store_files(path: Path) -> None:
    for extra in ("", "-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)


def _render_value(registry: Registry, line_prefix: str) -> str:
    """The value of the one rendered sample line starting with ``line_prefix``."""
    (line,) = [ln for ln in registry.render().splitlines() if ln.startswith(line_prefix + " ")]
    return line.rsplit(" ", 1)[1]


class TestFile:
    async def test_creates_parent_directories_and_uses_wal(self, tmp_path: Path) -> None:
        """start creates missing parent directories and the file is in WAL journal mode."""
        path = tmp_path / "a" / "b" / "outcomes.db"
        async with SqliteOutcomeStore(_config(path)):
            assert path.exists()
            conn = sqlite3.connect(path)
            try:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            finally:
                conn.close()

    async def test_indexes_exist(self, tmp_path: Path) -> None:
        """Indexes cover the page order (recorded_at, outcome_id), handler, severity,
        kind, device and site each with recorded_at, and site + severity with
        recorded_at; nothing else costs inserts."""
        path = tmp_path / "o.db"
        async with SqliteOutcomeStore(_config(path)):
            conn = sqlite3.connect(path)
            try:
                rows = conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outcomes'"
                ).fetchall()
            finally:
                conn.close()
        names = {r[0] for r in rows if not r[0].startswith("sqlite_autoindex")}
        assert names == _INDEXES

    async def test_memory_path_is_refused(self) -> None:
        """':memory:' is refused because the reader and the writer would see different databases."""
        with pytest.raises(StoreError, match="memory"):
            await SqliteOutcomeStore(_config(Path(":memory:"))).start()

    async def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        """A file written by a newer schema version is refused with a clear error."""
        path = tmp_path / "o.db"
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        conn.close()
        with pytest.raises(StoreError, match="upgrade netcortex"):
            await SqliteOutcomeStore(_config(path)).start()

    async def test_garbage_file_is_a_store_error(self, tmp_path: Path) -> None:
        """A file that is not SQLite fails start with StoreError, caused by the sqlite3 error."""
        path = tmp_path / "o.db"
        path.write_bytes(b"this is not a database" * 100)
        with pytest.raises(StoreError) as info:
            await SqliteOutcomeStore(_config(path)).start()
        assert isinstance(info.value.__cause__, sqlite3.DatabaseError)

    async def test_reader_in_another_connection_does_not_block_writes(self, tmp_path: Path) -> None:
        """An open read transaction elsewhere (the CLI) does not block the writer (WAL)."""
        path = tmp_path / "o.db"
        async with SqliteOutcomeStore(_config(path)) as store:
            await store.record(_outcome(1))
            await store.flush()
            reader = sqlite3.connect(path, isolation_level=None)
            try:
                reader.execute("BEGIN")
                assert reader.execute("SELECT count(*) FROM outcomes").fetchone()[0] == 1
                await store.record(_outcome(2))
                await asyncio.wait_for(store.flush(), 5)
                # the reader's snapshot is stable; a new one sees the new row
                assert reader.execute("SELECT count(*) FROM outcomes").fetchone()[0] == 1
                reader.execute("COMMIT")
                assert reader.execute("SELECT count(*) FROM outcomes").fetchone()[0] == 2
            finally:
                reader.close()


class TestBatching:
    async def test_batches_close_at_batch_size(self, tmp_path: Path) -> None:
        """With a long interval, a batch is handed over (and committed, without any
        flush) as soon as it reaches batch_size; the rest waits for the interval."""
        metrics = Registry()
        path = tmp_path / "o.db"
        config = _config(path, batch_size=100, flush_interval=60.0)
        async with SqliteOutcomeStore(config, metrics) as store:
            for i in range(250):
                await store.record(_outcome(i))
            async with asyncio.timeout(5):
                # Committed rows show in the file; the store's own count follows on
                # the loop (the writer reports each batch with call_soon_threadsafe).
                while _raw_count(path) < 200 or store.pending_rows() > 50:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            assert _raw_count(path) == 200
            assert store.pending_rows() == 50
            await store.flush()
            rows = metrics.counter("netcortex_store_rows_total", "", ("backend",))
            assert rows.value(backend="sqlite") == 250

    async def test_interval_writes_without_flush(self, tmp_path: Path) -> None:
        """A lone record is committed within flush_interval without anyone calling flush."""
        path = tmp_path / "o.db"
        async with SqliteOutcomeStore(_config(path, flush_interval=0.01)) as store:
            await store.record(_outcome(1))
            async with asyncio.timeout(5):
                # the commit is observable only in the file: poll it, bounded by the timeout
                while _raw_count(path) == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)

    async def test_duplicates_are_counted(self, tmp_path: Path) -> None:
        """Rows ignored for an existing outcome_id are counted as duplicates."""
        metrics = Registry()
        async with SqliteOutcomeStore(_config(tmp_path / "o.db"), metrics) as store:
            o = _outcome(1)
            for _ in range(3):
                await store.record(o)
            await store.flush()
        dups = metrics.counter("netcortex_store_duplicates_total", "", ("backend",))
        assert dups.value(backend="sqlite") == 2


class TestErrors:
    def test_every_sqlite3_exception_maps_to_store_error(self, tmp_path: Path) -> None:
        """Each sqlite3 exception class is mapped to StoreError, chained to the original."""
        classes = [
            obj
            for _, obj in inspect.getmembers(sqlite3, inspect.isclass)
            if issubclass(obj, Exception)
        ]
        assert sqlite3.OperationalError in classes
        assert sqlite3.Warning in classes
        for cls in classes:
            with pytest.raises(StoreError) as info, _sqlite_errors("test", tmp_path):
                raise cls("boom")
            assert isinstance(info.value.__cause__, cls)

    async def test_failed_batch_fails_flush_and_store_goes_on(self, tmp_path: Path) -> None:
        """A batch that cannot be written makes flush raise StoreError; the writer survives."""
        path = tmp_path / "o.db"
        metrics = Registry()
        async with SqliteOutcomeStore(_config(path), metrics) as store:
            conn = sqlite3.connect(path)
            conn.execute("ALTER TABLE outcomes RENAME TO moved")
            conn.commit()
            await store.record(_outcome(1))
            with pytest.raises(StoreError, match="no such table"):
                await store.flush()
            conn.execute("ALTER TABLE moved RENAME TO outcomes")
            conn.commit()
            conn.close()
            await store.record(_outcome(2))
            await store.flush()
            assert [o.summary for o in await store.query(OutcomeQuery())] == ["o2"]
        failures = metrics.counter("netcortex_store_write_failures_total", "", ("backend",))
        assert failures.value(backend="sqlite") == 1

    async def test_unbindable_value_fails_its_batch_not_the_writer(self, tmp_path: Path) -> None:
        """A row SQLite cannot bind (an integer beyond 64 bits) fails its flush with
        StoreError and the writer thread keeps writing later batches."""
        bad = dataclasses.replace(_outcome(1), schema_version=2**70)
        async with asyncio.timeout(10):
            async with SqliteOutcomeStore(_config(tmp_path / "o.db")) as store:
                await store.record(bad)
                with pytest.raises(StoreError, match="OverflowError"):
                    await store.flush()
                await store.record(_outcome(2))
                await store.flush()
                assert [o.summary for o in await store.query(OutcomeQuery())] == ["o2"]

    async def test_cancelled_start_stops_its_writer(self, tmp_path: Path) -> None:
        """A start() cancelled while the writer opens the file returns promptly, leaves
        no writer thread behind, and the store can be started afterwards."""
        store = SqliteOutcomeStore(_config(tmp_path / "o.db"))
        task = asyncio.create_task(store.start())
        await asyncio.sleep(0)  # the task is now awaiting the writer's "ready"
        task.cancel()
        async with asyncio.timeout(10):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert not [t for t in threading.enumerate() if t.name.endswith(":o.db")]
        async with asyncio.timeout(10), store:
            await store.record(_outcome(1))
            await store.flush()
            assert [o.summary for o in await store.query(OutcomeQuery())] == ["o1"]

    async def test_details_not_json_is_refused_at_record(self, tmp_path: Path) -> None:
        """An outcome whose details are not JSON is refused by record, not lost in a batch."""
        async with SqliteOutcomeStore(_config(tmp_path / "o.db")) as store:
            with pytest.raises(StoreError, match="JSON"):
                await store.record(_outcome(1, when=object()))
            with pytest.raises(StoreError, match="JSON"):
                await store.record(_outcome(2, bad=float("nan")))

    async def test_closed_store_can_start_again(self, tmp_path: Path) -> None:
        """A closed store can be started again and still holds what it stored."""
        store = SqliteOutcomeStore(_config(tmp_path / "o.db"))
        await store.start()
        await store.record(_outcome(1))
        await store.close()
        await store.start()
        try:
            await store.record(_outcome(2))
            await store.flush()
            assert [o.summary for o in await store.query(OutcomeQuery())] == ["o2", "o1"]
        finally:
            await store.close()

    async def test_query_on_closed_store_raises(self, tmp_path: Path) -> None:
        """Reading from a closed store raises StoreError."""
        store = SqliteOutcomeStore(_config(tmp_path / "o.db"))
        await store.start()
        await store.close()
        with pytest.raises(StoreError, match="not open"):
            await store.query(OutcomeQuery())
        with pytest.raises(StoreError, match="not open"):
            await store.flush()


class TestReadOnly:
    async def test_reads_what_a_writer_stored_while_it_runs(self, tmp_path: Path) -> None:
        """A read-only store sees rows a running writer committed, beside it (WAL)."""
        path = tmp_path / "o.db"
        outcome = _outcome(1)
        async with SqliteOutcomeStore(_config(path)) as writer:
            await writer.record(outcome)
            await writer.flush()
            async with SqliteOutcomeStore(_config(path), read_only=True) as reader:
                assert await reader.query(OutcomeQuery()) == [outcome]
                await reader.flush()  # nothing to flush, not an error

    async def test_never_creates_anything(self, tmp_path: Path) -> None:
        """Opening a missing store read-only fails with StoreError and creates no file or dir."""
        path = tmp_path / "missing" / "o.db"
        store = SqliteOutcomeStore(_config(path), read_only=True)
        with pytest.raises(StoreError, match="no outcome store"):
            await store.start()
        assert not path.parent.exists()

    async def test_refuses_writes(self, tmp_path: Path) -> None:
        """record on a read-only store raises StoreError and the file is unchanged."""
        path = tmp_path / "o.db"
        async with SqliteOutcomeStore(_config(path)):
            pass
        async with SqliteOutcomeStore(_config(path), read_only=True) as reader:
            with pytest.raises(StoreError, match="read-only"):
                await reader.record(_outcome(2))
        assert _raw_count(path) == 0

    async def test_a_foreign_sqlite_file_is_a_store_error(self, tmp_path: Path) -> None:
        """A SQLite file without the outcome tables reads as a StoreError, and gains none."""
        path = tmp_path / "other.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (x)")
        conn.close()
        async with SqliteOutcomeStore(_config(path), read_only=True) as reader:
            with pytest.raises(StoreError):
                await reader.query(OutcomeQuery())
        with sqlite3.connect(path) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        conn.close()
        assert tables == {"t"}


# The version-1 layout (issue 2), verbatim, and one row as issue 2 wrote it.
_V1_SCHEMA = """
CREATE TABLE outcomes (
    outcome_id TEXT PRIMARY KEY, handler_id TEXT NOT NULL, event_id TEXT NOT NULL,
    subject TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL, target TEXT NOT NULL,
    device TEXT, site TEXT, summary TEXT NOT NULL, diagnostic TEXT NOT NULL,
    fact_key TEXT NOT NULL, occurred_us INTEGER NOT NULL, recorded_us INTEGER NOT NULL,
    details TEXT NOT NULL, schema_version INTEGER NOT NULL
);
CREATE INDEX outcomes_recorded ON outcomes (recorded_us);
PRAGMA user_version=1;
"""
_V1_ROW = (
    "old-1", "link_down", "E1", "sensory.snmp.trap.link_down.r1.Gi1", "logged", "high",
    "r1|Gi1", "r1", None, "Link down on r1 Gi1", "", "link_down|r1|Gi1",
    1_767_225_600_000_000, 1_767_225_600_000_000, '{"if_index":1}', 1,
)  # fmt: skip


def _v1_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(_V1_SCHEMA)
        conn.execute(f"INSERT INTO outcomes VALUES ({', '.join('?' * 16)})", _V1_ROW)
        conn.commit()
    finally:
        conn.close()


class TestMigration:
    async def test_version_1_file_is_migrated_and_old_rows_load(self, tmp_path: Path) -> None:
        """A store written by issue 2 opens: migrated to the current version, its rows read
        back with no role and an empty trace, and new rows keep theirs."""
        path = tmp_path / "o.db"
        _v1_file(path)
        new = dataclasses.replace(_outcome(1), role="switch", trace={"decided_by": "handler"})
        async with SqliteOutcomeStore(_config(path)) as store:
            old = await store.get("old-1")
            assert old is not None
            assert old.target == "r1|Gi1"
            assert old.details == {"if_index": 1}
            assert old.role is None
            assert dict(old.trace) == {}
            await store.record(new)
            await store.flush()
            got = await store.get(new.outcome_id)
            assert got is not None
            assert got.role == "switch"
            assert dict(got.trace) == {"decided_by": "handler"}
            assert len(await store.query(OutcomeQuery())) == 2
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
            assert _index_names(conn) == _INDEXES
        finally:
            conn.close()

    async def test_migration_is_idempotent(self, tmp_path: Path) -> None:
        """Opening a migrated file again changes nothing and keeps every row."""
        path = tmp_path / "o.db"
        _v1_file(path)
        for _ in range(2):
            async with SqliteOutcomeStore(_config(path)) as store:
                assert [o.outcome_id for o in await store.query(OutcomeQuery())] == ["old-1"]

    async def test_read_only_reader_reads_an_unmigrated_file(self, tmp_path: Path) -> None:
        """A read-only opener (netcortex outcomes) reads a version-1 file without migrating it."""
        path = tmp_path / "o.db"
        _v1_file(path)
        async with SqliteOutcomeStore(_config(path), read_only=True) as store:
            (old,) = await store.query(OutcomeQuery())
            assert old.outcome_id == "old-1"
            assert dict(old.trace) == {}
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        finally:
            conn.close()

    async def test_trace_that_is_not_json_is_a_store_error(self, tmp_path: Path) -> None:
        """An outcome whose trace cannot be JSON-encoded is refused by record."""
        bad = dataclasses.replace(_outcome(1), trace={"x": object()})
        async with SqliteOutcomeStore(_config(tmp_path / "o.db")) as store:
            with pytest.raises(StoreError, match="trace"):
                await store.record(bad)


# The version-2 layout (issue 3): the table as now, the issue-2 and -3 indexes.
_V2_SCHEMA = """
CREATE TABLE outcomes (
    outcome_id TEXT PRIMARY KEY, handler_id TEXT NOT NULL, event_id TEXT NOT NULL,
    subject TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL, target TEXT NOT NULL,
    device TEXT, site TEXT, summary TEXT NOT NULL, diagnostic TEXT NOT NULL,
    fact_key TEXT NOT NULL, occurred_us INTEGER NOT NULL, recorded_us INTEGER NOT NULL,
    details TEXT NOT NULL, schema_version INTEGER NOT NULL, role TEXT,
    trace TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX outcomes_recorded ON outcomes (recorded_us);
CREATE INDEX outcomes_handler ON outcomes (handler_id, recorded_us);
CREATE INDEX outcomes_severity ON outcomes (severity, recorded_us);
CREATE INDEX outcomes_kind ON outcomes (kind, recorded_us);
CREATE INDEX outcomes_device ON outcomes (device, recorded_us);
PRAGMA user_version=2;
"""


class TestMigrationToV3:
    async def test_version_2_file_gains_the_paging_and_site_indexes(self, tmp_path: Path) -> None:
        """A store written by issue 3 opens at the current version: the (recorded_us,
        outcome_id), (site, recorded_us) and (site, severity, recorded_us) indexes are
        added, the superseded (recorded_us) one dropped, and its rows read back and page
        by site."""
        path = tmp_path / "o.db"
        conn = sqlite3.connect(path)
        try:
            conn.executescript(_V2_SCHEMA)
            conn.execute(
                f"INSERT INTO outcomes VALUES ({', '.join('?' * 18)})",
                (*_V1_ROW[:8], "dc-north", *_V1_ROW[9:], "router", '{"gates":[]}'),
            )
            conn.commit()
        finally:
            conn.close()
        async with SqliteOutcomeStore(_config(path)) as store:
            (old,) = await store.query(OutcomeQuery(site="dc-north"))
            assert (old.outcome_id, old.role, dict(old.trace)) == ("old-1", "router", {"gates": []})
            cursor = OutcomeCursor.after(old)
            assert await store.query(OutcomeQuery(site="dc-north", before=cursor)) == []
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert _index_names(conn) == _INDEXES
        finally:
            conn.close()


_T = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
_CURSOR = OutcomeCursor(_T, "8f" * 16)
_TWO_SEVERITIES = [Severity.HIGH, Severity.CRITICAL]


def _plan(path: Path, query: OutcomeQuery) -> list[str]:
    built = _build_query(_SELECT, query)
    assert built is not None
    conn = sqlite3.connect(path)
    try:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + built[0], built[1])]
    finally:
        conn.close()


class TestQueryPlans:
    """The common API queries stay index-driven: no full-table scan, no sort of every match.

    ``USE TEMP B-TREE FOR RIGHT PART OF ORDER BY`` is allowed: SQLite walks a
    ``(column, recorded_us)`` index in order and sorts only rows sharing one
    ``recorded_us`` by ``outcome_id``, stopping at the limit.
    """

    @pytest.fixture
    async def path(self, tmp_path: Path) -> Path:
        path = tmp_path / "o.db"
        async with SqliteOutcomeStore(_config(path)) as store:
            for i in range(20):
                await store.record(_outcome(i))
        return path

    @pytest.mark.parametrize(
        ("query", "index", "bound"),
        [
            pytest.param(OutcomeQuery(), "outcomes_recorded_id", "", id="newest-page"),
            pytest.param(
                OutcomeQuery(before=_CURSOR),
                "outcomes_recorded_id",
                "(recorded_us,outcome_id)<(?,?)",
                id="next-page",
            ),
            pytest.param(
                OutcomeQuery(device="r1", since=_T, until=_T),
                "outcomes_device",
                "device=? AND recorded_us>? AND recorded_us<?",
                id="device-time",
            ),
            pytest.param(
                OutcomeQuery(device="r1", since=_T, before=_CURSOR),
                "outcomes_device",
                "device=? AND recorded_us>?",
                id="device-time-next-page",
            ),
            pytest.param(
                OutcomeQuery(site="s", severity=_TWO_SEVERITIES, since=_T),
                "outcomes_site",
                "site=? AND recorded_us>?",
                id="site-severities-time",
            ),
            pytest.param(
                OutcomeQuery(site="s", severity=[Severity.HIGH], since=_T),
                "outcomes_site_severity",
                "site=? AND severity=? AND recorded_us>?",
                id="site-one-severity-time",
            ),
            pytest.param(
                OutcomeQuery(site="s", severity=[Severity.HIGH], since=_T, before=_CURSOR),
                "outcomes_site_severity",
                "site=? AND severity=? AND recorded_us>?",
                id="site-one-severity-time-next-page",
            ),
            pytest.param(
                OutcomeQuery(site="s", severity=_TWO_SEVERITIES, since=_T, before=_CURSOR),
                "outcomes_site",
                "site=? AND recorded_us>?",
                id="site-severities-time-next-page",
            ),
            pytest.param(
                OutcomeQuery(handler_id="h", kind=[OutcomeKind.LOGGED, OutcomeKind.ERRORED]),
                "outcomes_handler",
                "handler_id=?",
                id="handler-kinds",
            ),
            pytest.param(
                OutcomeQuery(since=_T, until=_T, before=_CURSOR),
                "outcomes_recorded_id",
                "recorded_us>? AND recorded_us<?",
                id="time-next-page",
            ),
        ],
    )
    def test_walks_an_index_in_order(
        self, path: Path, query: OutcomeQuery, index: str, bound: str
    ) -> None:
        """The query walks the expected index (with the expected bounds) in the page order."""
        plan = _plan(path, query)
        assert f"USING INDEX {index}" in plan[0], plan
        assert bound in plan[0], plan
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
        assert "SCAN outcomes" not in plan, plan

    @pytest.mark.parametrize(
        "query",
        [
            pytest.param(OutcomeQuery(severity=_TWO_SEVERITIES), id="severities"),
            pytest.param(OutcomeQuery(severity=_TWO_SEVERITIES, before=_CURSOR), id="next-page"),
            pytest.param(
                OutcomeQuery(
                    severity=_TWO_SEVERITIES,
                    kind=[OutcomeKind.LOGGED, OutcomeKind.ERRORED],
                    since=_T,
                ),
                id="severities-kinds-time",
            ),
        ],
    )
    def test_several_severities_merge_limited_index_walks(
        self, path: Path, query: OutcomeQuery
    ) -> None:
        """Several severities: one limited walk of (severity, recorded_us) per value, merged;
        the only full sorts are of each branch's at most ``limit`` rows."""
        plan = _plan(path, query)
        assert plan[0] == "MERGE (UNION ALL)", plan
        walks = [p for p in plan if p.startswith("SEARCH outcomes USING INDEX outcomes_severity")]
        assert len(walks) == len(_TWO_SEVERITIES), plan
        assert "SCAN outcomes" not in plan, plan
        for i, step in enumerate(plan):
            if step == "USE TEMP B-TREE FOR ORDER BY":
                assert plan[i - 1].startswith("SCAN (subquery-"), plan

    def test_get_uses_the_primary_key(self, path: Path) -> None:
        """get looks an outcome up by its primary key."""
        conn = sqlite3.connect(path)
        try:
            (row,) = conn.execute(
                f"EXPLAIN QUERY PLAN {_SELECT} WHERE outcome_id = ?", ("x",)
            ).fetchall()
        finally:
            conn.close()
        assert "USING INDEX sqlite_autoindex_outcomes_1 (outcome_id=?)" in row[3]


class TestPing:
    async def test_read_only_store_is_not_writable(self, tmp_path: Path) -> None:
        """ping on a read-only store (the CLI's) raises StoreError saying read-only."""
        path = tmp_path / "o.db"
        async with SqliteOutcomeStore(_config(path)):
            pass
        async with SqliteOutcomeStore(_config(path), read_only=True) as reader:
            with pytest.raises(StoreError, match="read-only"):
                await reader.ping()

    async def test_locked_file_fails_ping_quickly_and_recovers(self, tmp_path: Path) -> None:
        """While another connection holds the write lock, ping fails within seconds with
        StoreError (database is locked); once released, ping and writes work."""
        path = tmp_path / "o.db"
        async with SqliteOutcomeStore(_config(path)) as store:
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                async with asyncio.timeout(5):
                    with pytest.raises(StoreError, match="locked"):
                        await store.ping()
                other.execute("ROLLBACK")
            finally:
                other.close()
            await store.ping()
            await store.record(_outcome(1))
            await store.flush()
            assert len(await store.query(OutcomeQuery())) == 1

    async def test_ping_does_not_disturb_the_writer(self, tmp_path: Path) -> None:
        """Pings racing with a stream of batches neither fail nor lose or fail a write."""
        path = tmp_path / "o.db"
        metrics = Registry()
        async with SqliteOutcomeStore(_config(path, batch_size=10), metrics) as store:

            async def pinger() -> None:
                for _ in range(30):
                    await store.ping()

            async def writer() -> None:
                for i in range(1000):
                    await store.record(_outcome(i))
                    if i % 100 == 0:
                        await store.flush()
                        await asyncio.sleep(0)

            async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
                tg.create_task(pinger())
                tg.create_task(pinger())
                tg.create_task(writer())
            await store.flush()
        assert _raw_count(path) == 1000
        failures = metrics.counter("netcortex_store_write_failures_total", "", ("backend",))
        assert failures.value(backend="sqlite") == 0

    async def test_deleted_file_fails_ping_and_is_not_recreated(self, tmp_path: Path) -> None:
        """A store file deleted under a running store fails ping; ping creates no new file."""
        path = tmp_path / "o.db"
        async with SqliteOutcomeStore(_config(path)) as store:
            await store.ping()
            await asyncio.to_thread(_delete_store_files, path)
            with pytest.raises(StoreError, match="ping"):
                await store.ping()
            assert not path.exists()

    async def test_dead_writer_fails_ping_flush_and_close(self, tmp_path: Path) -> None:
        """With the writer thread gone, ping, flush and close raise StoreError, never hang."""
        store = SqliteOutcomeStore(_config(tmp_path / "o.db"))
        await store.start()
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[None] = loop.create_future()
        store._queue.put(_Flush(loop, stopped, stop=True))  # end the writer behind its back
        await stopped
        thread = store._thread
        assert thread is not None
        await asyncio.to_thread(thread.join, 5)
        async with asyncio.timeout(10):
            with pytest.raises(StoreError, match="writer thread"):
                await store.ping()
            await store.record(_outcome(1))
            with pytest.raises(StoreError, match="writer thread"):
                await store.flush()
            with pytest.raises(StoreError, match="writer thread"):
                await store.close()
        with pytest.raises(StoreError, match="closed"):
            await store.ping()


class TestQueueDepth:
    async def test_pending_rows_are_reported_until_committed(self, tmp_path: Path) -> None:
        """Recorded, uncommitted rows show as netcortex_queue_depth{queue="store_pending"};
        0 once flushed."""
        metrics = Registry()
        config = _config(tmp_path / "o.db", batch_size=1000, flush_interval=60.0)
        async with SqliteOutcomeStore(config, metrics) as store:
            assert _render_value(metrics, 'netcortex_queue_depth{queue="store_pending"}') == "0"
            for i in range(5):
                await store.record(_outcome(i))
            assert store.pending_rows() == 5
            assert _render_value(metrics, 'netcortex_queue_depth{queue="store_pending"}') == "5"
            await store.flush()
            assert store.pending_rows() == 0
            assert _render_value(metrics, 'netcortex_queue_depth{queue="store_pending"}') == "0"

    async def test_rows_handed_to_the_writer_count_until_written(self, tmp_path: Path) -> None:
        """Rows handed to the writer count as pending while the file is locked, and drop
        to 0 once their batch commits."""
        path = tmp_path / "o.db"
        config = _config(path, batch_size=4, flush_interval=60.0)
        async with SqliteOutcomeStore(config) as store:
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # the writer waits for the lock
                for i in range(4):
                    await store.record(_outcome(i))  # the 4th hands the batch over
                assert store.pending_rows() == 4
            finally:
                other.execute("ROLLBACK")
                other.close()
            await store.flush()
            assert store.pending_rows() == 0
        assert _raw_count(path) == 4


async def test_batches_that_queue_up_behind_a_slow_commit_are_merged(tmp_path: Path) -> None:
    """While the writer waits (another connection holds the write lock), handed-over
    batches queue up; once it can write, they go in one transaction, not ten, and
    every row lands."""
    path = tmp_path / "o.db"
    registry = Registry()
    config = StoreConfig(sqlite_path=path, batch_size=10, flush_interval=60)
    async with SqliteOutcomeStore(config, registry) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            made = [_outcome(n) for n in range(100)]
            for outcome in made:  # ten hand-overs of 10 rows
                await store.record(outcome)
            blocker.execute("COMMIT")
        finally:
            blocker.close()
        await store.flush()
        commits = store._metrics.batch_seconds.count(backend="sqlite")
        # The first batch may be taken before the others queue; the rest merge.
        assert commits <= 2
        rows = await store.query(OutcomeQuery(limit=1000))
        assert sorted(o.outcome_id for o in rows) == sorted(o.outcome_id for o in made)
