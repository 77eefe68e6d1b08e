"""The CLI on ``store.backend: postgres``: ``outcomes`` (table, JSON, export),
``maintenance add|list|remove`` and ``db upgrade`` read and write the configured
PostgreSQL schema, never a SQLite file, and never print the password."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netcortex.bridge import cli
from netcortex.bridge.cli import main
from netcortex.config import StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import StoreError
from netcortex.memory.episodic.postgres import PostgresOutcomeStore
from netcortex.testing import make_event

pytestmark = pytest.mark.usefixtures("restore_logging")


def _outcomes(n: int) -> list[ReflexOutcome]:
    now = datetime.now(UTC)
    made = []
    for i in range(n):
        event = make_event("link_down", device="192.0.2.11", interface=f"Gi1/0/{i}")
        outcome = ReflexOutcome.for_event(
            "link_down",
            event,
            severity=Severity.HIGH if i % 2 else Severity.INFO,
            summary=f"Gi1/0/{i} down",
        )
        made.append(replace(outcome, recorded_at=now - timedelta(minutes=i)))
    return made


@pytest.fixture
def pg_config(tmp_path: Path, postgres_dsn: str, postgres_schema: str) -> Path:
    """A config on the test's PostgreSQL schema; ``store.sqlite_path`` points at a file
    that must never be created."""
    path = tmp_path / "netcortex.yaml"
    path.write_text(
        "store:\n"
        "  backend: postgres\n"
        f"  postgres_dsn: '{postgres_dsn}'\n"
        f"  postgres_schema: {postgres_schema}\n"
        f"  sqlite_path: {tmp_path / 'must-not-exist.db'}\n"
        "trap: {enabled: false}\n",
        encoding="utf-8",
    )
    return path


def _fill(postgres_dsn: str, schema: str, outcomes: list[ReflexOutcome]) -> None:
    async def fill() -> None:
        config = StoreConfig(backend="postgres", postgres_dsn=postgres_dsn, postgres_schema=schema)
        async with PostgresOutcomeStore(config) as store:
            for outcome in outcomes:
                await store.record(outcome)
            await store.flush()

    asyncio.run(fill())


def test_outcomes_reads_postgres(
    pg_config: Path,
    postgres_dsn: str,
    postgres_schema: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``outcomes --json`` and filters answer from PostgreSQL, newest first."""
    made = _outcomes(5)
    _fill(postgres_dsn, postgres_schema, made)
    capsys.readouterr()  # the fill's own log lines
    assert main(["outcomes", "--config", str(pg_config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["outcome_id"] for r in rows] == [o.outcome_id for o in made]
    assert main(["outcomes", "--config", str(pg_config), "--json", "--severity", "high"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert not (tmp_path / "must-not-exist.db").exists()


def test_export_pages_through_postgres(
    pg_config: Path,
    postgres_dsn: str,
    postgres_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--export`` writes every outcome once, newest first, across cursor pages."""
    made = _outcomes(7)
    _fill(postgres_dsn, postgres_schema, made)
    capsys.readouterr()  # the fill's own log lines
    monkeypatch.setattr(cli, "EXPORT_PAGE_SIZE", 3)
    target = tmp_path / "archive.jsonl"
    assert main(["outcomes", "--config", str(pg_config), "--export", str(target)]) == 0
    assert capsys.readouterr().out == f"exported 7 outcomes to {target}\n"
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["outcome_id"] for line in lines] == [o.outcome_id for o in made]


def test_outcomes_on_an_empty_database_creates_nothing(
    pg_config: Path, postgres_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reading a schema the engine never created exits 1 with advice; the reader
    creates no schema (it opens read-only)."""
    assert main(["outcomes", "--config", str(pg_config)]) == 1
    err = capsys.readouterr().err
    assert f"no outcome store in schema {postgres_schema}" in err
    assert "db upgrade" in err


async def test_read_only_store_refuses_writes(postgres_dsn: str, postgres_schema: str) -> None:
    """A read-only PostgreSQL store reads what a writer stored and refuses ``record``/``prune``."""
    config = StoreConfig(
        backend="postgres", postgres_dsn=postgres_dsn, postgres_schema=postgres_schema
    )
    made = _outcomes(2)
    async with PostgresOutcomeStore(config) as writer:
        for outcome in made:
            await writer.record(outcome)
        await writer.flush()
    async with PostgresOutcomeStore(config, read_only=True) as reader:
        assert await reader.get(made[0].outcome_id) == made[0]
        await reader.flush()  # nothing to flush: returns
        with pytest.raises(StoreError, match="read-only"):
            await reader.record(made[0])
        with pytest.raises(StoreError, match="read-only"):
            await reader.prune()


def test_maintenance_round_trip_on_postgres(
    pg_config: Path, postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``maintenance add|list|remove`` keep windows in PostgreSQL; messages name the
    schema without the password."""
    argv = [
        "maintenance", "add", "sw1-card", "--config", str(pg_config),
        "--scope", "device", "--target", "sw1-north",
        "--start", "2026-12-06T22:00:00", "--duration", "2h",
        "--timezone", "Europe/Amsterdam", "--reason", "line card swap",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "added maintenance window sw1-card" in out
    assert "postgres" in out
    assert main(["maintenance", "list", "--config", str(pg_config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["source"]) for r in rows] == [("sw1-card", "store")]
    assert main(["maintenance", "remove", "sw1-card", "--config", str(pg_config)]) == 0
    capsys.readouterr()
    assert main(["maintenance", "remove", "sw1-card", "--config", str(pg_config)]) == 1
    err = capsys.readouterr().err
    assert "no stored window 'sw1-card'" in err
    assert not (tmp_path / "must-not-exist.db").exists()


def test_db_upgrade_creates_every_table(
    pg_config: Path, postgres_dsn: str, postgres_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``db upgrade`` on PostgreSQL creates the outcome, maintenance, incident and
    poll-state tables, each with its ledger, so a read-only reader works right after."""
    assert main(["db", "upgrade", "--config", str(pg_config)]) == 0
    capsys.readouterr()

    async def tables() -> set[str]:
        import asyncpg

        conn = await asyncpg.connect(postgres_dsn)
        try:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                postgres_schema,
            )
        finally:
            await conn.close()
        return {r[0] for r in rows}

    found = asyncio.run(tables())
    assert {
        "outcomes", "schema_migrations", "maintenance_windows", "maintenance_migrations",
        "poll_state", "poll_migrations", "incidents", "incident_members", "incident_migrations",
    } <= found  # fmt: skip
    assert main(["outcomes", "--config", str(pg_config)]) == 0


def _config_with_dsn(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "bad-dsn.yaml"
    path.write_text(
        "store:\n"
        "  backend: postgres\n"
        f"  postgres_dsn: '{dsn}'\n"
        "  postgres_schema: t_never_created\n"
        f"  sqlite_path: {tmp_path / 'must-not-exist.db'}\n"
        "trap: {enabled: false}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://alice:hunter2@127.0.0.1:notaport/test",
        "postgresql://alice:hun/ter2@127.0.0.1:5432/test",
        "postgresql://alice:hunter2@127.0.0.1:99999/test",
        "host=127.0.0.1 password=hunter2",
    ],
    ids=["port-not-a-number", "unencoded-slash", "port-out-of-range", "key-value"],
)
@pytest.mark.parametrize(
    "command",
    [["outcomes"], ["maintenance", "list"], ["maintenance", "remove", "w1"], ["db", "upgrade"]],
    ids=" ".join,
)
def test_a_dsn_that_does_not_work_exits_1_with_a_message(
    tmp_path: Path, dsn: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every PostgreSQL command exits 1 with a one-line reason on stderr (no traceback)
    when the DSN does not parse or is refused, and never prints the password."""
    config = _config_with_dsn(tmp_path, dsn)
    assert main([*command, "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"netcortex {command[0]}")
    assert "hun" not in captured.err + captured.out


def test_a_password_in_the_dsn_query_is_never_printed(
    tmp_path: Path, postgres_dsn: str, postgres_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A password given as ``?password=`` (libpq style, which asyncpg honours) is
    redacted in what ``db upgrade`` and ``maintenance remove`` print."""
    dsn = postgres_dsn + ("&" if "?" in postgres_dsn else "?") + "password=hunter2"
    path = tmp_path / "netcortex.yaml"
    path.write_text(
        "store:\n"
        "  backend: postgres\n"
        f"  postgres_dsn: '{dsn}'\n"
        f"  postgres_schema: {postgres_schema}\n"
        "trap: {enabled: false}\n",
        encoding="utf-8",
    )
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert main(["maintenance", "remove", "nope", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert "password=**redacted**" in captured.out
    assert "hunter2" not in captured.out + captured.err


def test_maintenance_list_and_remove_create_no_schema(
    pg_config: Path, postgres_dsn: str, postgres_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like on SQLite (no file is created), ``maintenance list`` and ``remove`` on a
    schema nobody created (a typo in ``store.postgres_schema``) read nothing and
    create nothing: list shows the config windows, remove finds no window."""
    assert main(["maintenance", "list", "--config", str(pg_config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["maintenance", "remove", "w1", "--config", str(pg_config)]) == 1
    assert "no stored window 'w1'" in capsys.readouterr().err

    async def schema_exists() -> bool:
        import asyncpg

        conn = await asyncpg.connect(postgres_dsn)
        try:
            found = await conn.fetchval(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1", postgres_schema
            )
        finally:
            await conn.close()
        return found is not None

    assert asyncio.run(schema_exists()) is False
