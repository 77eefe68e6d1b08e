"""Unit tests for ``PostgresOutcomeStore`` specifics: migrations, indexes, batching
metrics, error mapping, secrets, config and app wiring.

Behaviour every store shares is in ``tests/contracts/test_outcome_store.py``; these
run against the session's real PostgreSQL (``tests.conftest.postgres_dsn``), each
in a fresh schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from netcortex.app import make_store
from netcortex.config import StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import StoreError
from netcortex.memory.episodic.postgres import (
    SCHEMA_VERSION,
    PostgresOutcomeStore,
    _pg_errors,
)
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.metrics import Registry
from netcortex.testing import make_event

_INDEXES = {
    "outcomes_pkey",
    "outcomes_recorded_id",
    "outcomes_handler",
    "outcomes_severity",
    "outcomes_kind",
    "outcomes_device",
    "outcomes_site",
    "outcomes_site_severity",  # migration 2 (issue 6)
}


def _outcome(n: int = 0) -> ReflexOutcome:
    event = make_event("link_down", interface=f"Gi{n}")
    return ReflexOutcome.for_event("link_down", event, severity=Severity.HIGH, summary=f"o{n}")


@pytest.fixture
def config(postgres_dsn: str, postgres_schema: str) -> StoreConfig:
    return StoreConfig(
        backend="postgres", postgres_dsn=postgres_dsn, postgres_schema=postgres_schema
    )


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test server, for looking behind the store's back."""
    conn = await asyncpg.connect(postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()


def _with(config: StoreConfig, **changes: Any) -> StoreConfig:
    return config.model_copy(update=changes)


class TestSchema:
    async def test_migrations_are_recorded_and_indexes_exist(
        self, config: StoreConfig, admin: asyncpg.Connection
    ) -> None:
        """start creates the schema, records each migration once, and builds the indexes."""
        schema = config.postgres_schema
        async with PostgresOutcomeStore(config):
            pass
        async with PostgresOutcomeStore(config):  # a second start applies nothing again
            pass
        versions = await admin.fetch(f'SELECT version FROM "{schema}".schema_migrations')
        assert [r["version"] for r in versions] == list(range(1, SCHEMA_VERSION + 1))
        rows = await admin.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'outcomes'",
            schema,
        )
        assert {r["indexname"] for r in rows} == _INDEXES

    async def test_concurrent_starts_on_a_new_schema_migrate_once(
        self, config: StoreConfig, admin: asyncpg.Connection
    ) -> None:
        """Stores starting at once on one new schema all open; each migration runs once."""
        stores = [PostgresOutcomeStore(config) for _ in range(4)]
        try:
            await asyncio.gather(*(s.start() for s in stores))
        finally:
            for s in stores:
                await s.close()
        count = await admin.fetchval(
            f'SELECT count(*) FROM "{config.postgres_schema}".schema_migrations'
        )
        assert count == SCHEMA_VERSION

    async def test_newer_schema_is_refused(
        self, config: StoreConfig, admin: asyncpg.Connection
    ) -> None:
        """A schema migrated by a newer netcortex is refused with a StoreError."""
        async with PostgresOutcomeStore(config):
            pass
        await admin.execute(
            f'INSERT INTO "{config.postgres_schema}".schema_migrations (version) VALUES ($1)',
            SCHEMA_VERSION + 1,
        )
        with pytest.raises(StoreError, match="upgrade netcortex"):
            await PostgresOutcomeStore(config).start()


class TestBatching:
    async def test_batches_close_at_batch_size(self, config: StoreConfig) -> None:
        """With a long interval, 1,000 records are written in exactly 10 batches of 100."""
        metrics = Registry()
        config = _with(config, batch_size=100, flush_interval=60.0)
        async with PostgresOutcomeStore(config, metrics) as store:
            for i in range(1000):
                await store.record(_outcome(i))
            await store.flush()
        batches = metrics.histogram("netcortex_store_batch_seconds", "", ("backend",))
        rows = metrics.counter("netcortex_store_rows_total", "", ("backend",))
        assert batches.count(backend="postgres") == 10
        assert rows.value(backend="postgres") == 1000

    async def test_duplicates_are_counted(self, config: StoreConfig) -> None:
        """Rows ignored for an existing outcome_id (in one batch or across) are counted."""
        metrics = Registry()
        async with PostgresOutcomeStore(config, metrics) as store:
            o = _outcome(1)
            for _ in range(3):
                await store.record(o)
            await store.flush()
            await store.record(o)
            await store.flush()
        dups = metrics.counter("netcortex_store_duplicates_total", "", ("backend",))
        assert dups.value(backend="postgres") == 3


class TestErrors:
    async def test_failed_batch_fails_flush_and_store_goes_on(
        self, config: StoreConfig, admin: asyncpg.Connection
    ) -> None:
        """A batch that cannot be written makes flush raise StoreError; the writer survives."""
        schema = config.postgres_schema
        metrics = Registry()
        async with PostgresOutcomeStore(config, metrics) as store:
            await admin.execute(f'ALTER TABLE "{schema}".outcomes RENAME TO moved')
            await store.record(_outcome(1))
            with pytest.raises(StoreError, match="does not exist"):
                await store.flush()
            with pytest.raises(StoreError):
                await store.ping()
            await admin.execute(f'ALTER TABLE "{schema}".moved RENAME TO outcomes')
            await store.record(_outcome(2))
            await store.flush()
            await store.ping()
            assert [o.summary for o in await store.query(OutcomeQuery())] == ["o2"]
        failures = metrics.counter("netcortex_store_write_failures_total", "", ("backend",))
        assert failures.value(backend="postgres") == 1

    async def test_asyncpg_errors_map_to_store_error(self) -> None:
        """asyncpg server and client errors become StoreError, chained to the original."""
        for exc in (
            asyncpg.UndefinedTableError("boom"),
            asyncpg.InterfaceError("boom"),
            ConnectionRefusedError("boom"),
            TimeoutError("boom"),
        ):
            with pytest.raises(StoreError) as info:
                async with _pg_errors("test", "somewhere"):
                    raise exc
            assert info.value.__cause__ is exc

    async def test_unreachable_server_is_a_store_error_without_the_password(
        self, postgres_dsn: str
    ) -> None:
        """A refused connection fails start; neither the error nor the logs hold the password."""
        parts = urlsplit(postgres_dsn)
        dsn = urlunsplit(parts._replace(netloc="alice:s3cret-pw@127.0.0.1:1"))
        config = StoreConfig(backend="postgres", postgres_dsn=dsn)
        with capture_logs() as logs, pytest.raises(StoreError) as info:
            await PostgresOutcomeStore(config).start()
        assert "s3cret-pw" not in str(info.value)
        assert "127.0.0.1:1" in str(info.value)
        assert "s3cret-pw" not in repr(logs)
        assert "s3cret-pw" not in repr(config)

    async def test_open_and_close_logs_never_hold_the_password(
        self, postgres_dsn: str, postgres_schema: str
    ) -> None:
        """store_opened/store_closed log the redacted DSN (the test server trusts any password)."""
        parts = urlsplit(postgres_dsn)
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or "postgres"
        dsn = urlunsplit(parts._replace(netloc=f"{user}:s3cret-pw@{host}"))
        config = StoreConfig(backend="postgres", postgres_dsn=dsn, postgres_schema=postgres_schema)
        with capture_logs() as logs:
            async with PostgresOutcomeStore(config) as store:
                await store.ping()
        (opened,) = [entry for entry in logs if entry["event"] == "store_opened"]
        assert opened["dsn"] == urlunsplit(parts._replace(netloc=f"**redacted**@{host}"))
        assert "s3cret-pw" not in repr(logs)


class TestConfig:
    def test_postgres_needs_a_dsn(self) -> None:
        with pytest.raises(ValidationError, match="postgres_dsn is required"):
            StoreConfig(backend="postgres")

    @pytest.mark.parametrize("name", ["Bad", "1abc", "a-b", "pg_catalog", "a" * 64, "x;drop"])
    def test_schema_must_be_an_identifier(self, name: str) -> None:
        with pytest.raises(ValidationError, match="identifier"):
            StoreConfig(postgres_schema=name)

    def test_schema_default(self) -> None:
        assert StoreConfig().postgres_schema == "netcortex"

    def test_app_makes_the_configured_store(self, config: StoreConfig) -> None:
        assert isinstance(make_store(config, Registry()), PostgresOutcomeStore)
        assert isinstance(make_store(StoreConfig(), Registry()), SqliteOutcomeStore)
