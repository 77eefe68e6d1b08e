"""Unit tests: what only ``PostgresPollState`` has (its table, its ledger, its error mapping).

The ``PollState`` behaviour both backends share is in
``tests/contracts/test_poll_state.py``. These run on the session's PostgreSQL
(``tests.conftest.postgres_dsn``), each in a fresh schema.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from netcortex.errors import StoreError
from netcortex.logs import redact_url
from netcortex.sensory.poll.diff import BgpPeerState, DeviceSnapshot, InterfaceState
from netcortex.sensory.poll.state import snapshot_to_json
from netcortex.sensory.poll.state_postgres import LEDGER, MIGRATIONS, PostgresPollState

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SNAP = DeviceSnapshot(
    device="sw1",
    agent="192.0.2.11",
    sys_uptime_ticks=100_000,
    interfaces={3: InterfaceState(3, "Gi1/0/3", "GigabitEthernet1/0/3", 1, 1, 4200)},
    bgp={"10.0.0.2": BgpPeerState("10.0.0.2", 6)},
    polled_at=T0,
)


@pytest.fixture
async def conn(postgres_dsn: str) -> AsyncIterator[Any]:
    """A plain asyncpg connection to the test server (to look behind the state's back)."""
    c = await asyncpg.connect(postgres_dsn, timeout=10)
    yield c
    await c.close()


@pytest.fixture
async def state(postgres_dsn: str, postgres_schema: str) -> AsyncIterator[PostgresPollState]:
    s = PostgresPollState(postgres_dsn, postgres_schema)
    await s.start()
    yield s
    await s.close()


class TestLayout:
    async def test_rows_are_the_snapshot_json_and_a_flag(
        self, state: PostgresPollState, conn: Any, postgres_schema: str
    ) -> None:
        """One row per device: the snapshot as snapshot_to_json text, saved_at, down."""
        await state.save(SNAP)
        await state.set_down("sw9", True)
        rows = await conn.fetch(
            f'SELECT device, snapshot, saved_at, down FROM "{postgres_schema}".poll_state '
            "ORDER BY device"
        )
        assert [(r["device"], r["snapshot"], r["down"]) for r in rows] == [
            ("sw1", snapshot_to_json(SNAP), False),
            ("sw9", None, True),
        ]
        assert all(r["saved_at"].tzinfo is not None for r in rows)

    async def test_migrations_are_idempotent_and_in_their_own_ledger(
        self, postgres_dsn: str, postgres_schema: str, conn: Any
    ) -> None:
        """Starting many times (also at once) applies version 1 once, in poll_migrations
        (no other component's ledger is touched)."""
        states = [PostgresPollState(postgres_dsn, postgres_schema) for _ in range(3)]
        await asyncio.gather(*(s.start() for s in states))
        for s in states:
            await s.close()
        again = PostgresPollState(postgres_dsn, postgres_schema)
        await again.start()
        await again.close()
        versions = await conn.fetch(f'SELECT version FROM "{postgres_schema}".{LEDGER}')
        assert [r["version"] for r in versions] == [MIGRATIONS[-1][0]] == [1]
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            postgres_schema,
        )
        assert {r["table_name"] for r in tables} == {"poll_state", LEDGER}

    async def test_too_new_ledger_is_refused_by_name(
        self, postgres_dsn: str, postgres_schema: str, conn: Any
    ) -> None:
        """A ledger at version 2 (a newer netcortex): start fails naming the poll state
        and both versions, and leaves nothing open."""
        await conn.execute(f'CREATE SCHEMA "{postgres_schema}"')
        await conn.execute(
            f'CREATE TABLE "{postgres_schema}".{LEDGER} (version INTEGER PRIMARY KEY, '
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        await conn.execute(f'INSERT INTO "{postgres_schema}".{LEDGER} (version) VALUES (2)')
        store = PostgresPollState(postgres_dsn, postgres_schema)
        with pytest.raises(StoreError, match=r"poll state schema version 2.*up to 1"):
            await store.start()
        with pytest.raises(StoreError, match="not started"):
            await store.load_all()
        await store.close()


class TestErrors:
    def test_schema_must_be_an_identifier(self, postgres_dsn: str) -> None:
        """A schema name that is not a lower-case identifier is refused at construction."""
        with pytest.raises(StoreError, match="identifier"):
            PostgresPollState(postgres_dsn, 'x"; DROP TABLE y; --')

    async def test_unreachable_server(self) -> None:
        """Connection refused: StoreError 'postgres connect failed on <redacted URL>',
        the OS error chained, the password nowhere."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        store = PostgresPollState(f"postgresql://nc:hunter2pw@127.0.0.1:{port}/db", "netcortex")
        with pytest.raises(StoreError, match="postgres connect failed on") as caught:
            await store.start()
        assert "hunter2pw" not in str(caught.value)
        assert f"127.0.0.1:{port}" in str(caught.value)
        assert isinstance(caught.value.__cause__, OSError)
        await store.close()

    async def test_server_side_failure_is_a_store_error(
        self, state: PostgresPollState, conn: Any, postgres_schema: str
    ) -> None:
        """The table vanishing under a running state: save and loads raise StoreError
        (mapped from asyncpg, chained), they do not leak asyncpg exceptions."""
        await conn.execute(f'DROP TABLE "{postgres_schema}".poll_state')
        for call in (state.save(SNAP), state.set_down("sw1", True), state.load_all()):
            with pytest.raises(StoreError, match=r"postgres (write|read) failed") as caught:
                await call
            assert isinstance(caught.value.__cause__, asyncpg.PostgresError)

    async def test_opened_log_names_backend_schema_and_redacted_dsn(
        self, postgres_dsn: str, postgres_schema: str
    ) -> None:
        """poll_state_opened carries backend postgres, the schema and the DSN as
        redact_url shows it (never its user-info)."""
        store = PostgresPollState(postgres_dsn, postgres_schema)
        with capture_logs() as logs:
            await store.start()
        await store.close()
        [opened] = [e for e in logs if e["event"] == "poll_state_opened"]
        assert opened["backend"] == "postgres"
        assert opened["schema"] == postgres_schema
        assert opened["dsn"] == redact_url(postgres_dsn)
