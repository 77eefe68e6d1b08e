"""``netcortex incidents``: lists and shows incidents on SQLite and PostgreSQL, and
never creates a store (nor its incident tables) that does not exist.

Incidents are written the way the correlator writes them: ``save`` on the
incident store beside the outcomes (``SqliteIncidentStore`` /
``PostgresIncidentStore``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from netcortex.bridge.cli import main, render_incidents
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.memory.episodic.incidents import PostgresIncidentStore, SqliteIncidentStore

pytestmark = pytest.mark.usefixtures("restore_logging")

NOW = datetime.now(UTC).replace(microsecond=0)


def _incident(n: int, **fields: object) -> Incident:
    """Incident ``n``: opened ``n`` minutes ago (newest change first = lowest ``n``)."""
    at = NOW - timedelta(minutes=n)
    values: dict[str, object] = {
        "incident_id": f"{n:02d}" + "ab" * 15,
        "rule": "cable_pair",
        "root": f"cable:sw{n}-north|Gi1/0/1~sw{n}-south|Gi1/0/1",
        "state": IncidentState.OPEN,
        "severity": Severity.HIGH,
        "summary": f"cable {n} cut",
        "members": (f"sw{n}-north|Gi1/0/1", f"sw{n}-south|Gi1/0/1"),
        "evidence": (f"out-{n}-a", f"out-{n}-b"),
        "opened_at": at,
        "updated_at": at,
        "site": "north",
    }
    values.update(fields)
    return Incident(**values)  # type: ignore[arg-type]


def _three() -> list[Incident]:
    """An open cable incident, a resolved device incident with an inhibited child, and
    an open flapping incident at another site."""
    return [
        _incident(1),
        _incident(
            2,
            rule="device_root",
            root="device:core-1",
            state=IncidentState.RESOLVED,
            severity=Severity.CRITICAL,
            summary="core-1 rebooted",
            members=("core-1", "core-1|Gi1/0/1", "core-1|Gi1/0/2"),
            evidence=("out-reboot", "out-l1", "out-l2"),
            inhibited=("out-l1", "out-l2"),
            resolved_at=NOW - timedelta(seconds=30),
            updated_at=NOW - timedelta(seconds=30),
            version=3,
            details={"cause": "reboot"},
        ),
        _incident(
            3,
            rule="flapping",
            root="interface:edge-7|Gi0/1",
            members=("edge-7|Gi0/1",),
            evidence=("out-f1",),
            site="west",
            flapping=True,
        ),
    ]


@dataclass
class Site:
    """A config file on one backend, and a way to save incidents directly."""

    config: Path
    db: Path
    pg: tuple[str, str] | None = None  # (dsn, schema) on PostgreSQL

    def fill(self, incidents: list[Incident]) -> None:
        """Save ``incidents`` as the correlator does (creates the tables if needed)."""

        async def go() -> None:
            store: SqliteIncidentStore | PostgresIncidentStore = (
                SqliteIncidentStore(self.db) if self.pg is None else PostgresIncidentStore(*self.pg)
            )
            await store.start()
            try:
                for incident in incidents:
                    assert await store.save(incident)
            finally:
                await store.close()

        asyncio.run(go())

    def has_tables(self) -> bool:
        """Whether the incident tables exist (SQLite: in the file; PostgreSQL: the ledger)."""
        if self.pg is None:
            if not self.db.exists():
                return False
            conn = sqlite3.connect(self.db)
            try:
                row = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'incidents'"
                ).fetchone()
            finally:
                conn.close()
            return row is not None
        dsn, schema = self.pg

        async def look() -> object:
            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                return await conn.fetchval(
                    "SELECT to_regclass($1)", f"{schema}.incident_migrations"
                )
            finally:
                await conn.close()

        return asyncio.run(look()) is not None


@pytest.fixture(params=["sqlite", "postgres"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    """A config naming a store (SQLite file or PostgreSQL schema) not created yet."""
    path = tmp_path / "netcortex.yaml"
    db = tmp_path / "outcomes.db"
    if request.param == "sqlite":
        path.write_text(f"store:\n  sqlite_path: {db}\n", encoding="utf-8")
        return Site(path, db)
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")
    path.write_text(
        "store:\n  backend: postgres\n"
        f"  postgres_dsn: '{dsn}'\n  postgres_schema: {schema}\n"
        f"  sqlite_path: {tmp_path / 'must-not-exist.db'}\n",
        encoding="utf-8",
    )
    return Site(path, tmp_path / "must-not-exist.db", (dsn, schema))


def test_missing_store_is_refused_and_not_created(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a store the command exits 1, says so, and creates no file or table."""
    assert main(["incidents", "--config", str(site.config)]) == 1
    err = capsys.readouterr().err
    assert "no incidents in" in err
    assert "has the engine run" in err
    assert not site.db.exists()
    assert not site.has_tables()


def test_store_without_incident_tables_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing SQLite store from before correlation gets no incident tables."""
    db = tmp_path / "outcomes.db"
    sqlite3.connect(db).close()  # the outcome store's file, no incidents table
    config = tmp_path / "netcortex.yaml"
    config.write_text(f"store:\n  sqlite_path: {db}\n", encoding="utf-8")
    assert main(["incidents", "-c", str(config)]) == 1
    assert "no incidents in sqlite" in capsys.readouterr().err
    assert not Site(config, db).has_tables()


def test_table_and_json(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """The table lists newest change first with short ids and counts; --json every field."""
    made = _three()
    site.fill(made)
    capsys.readouterr()  # the store may log (migrations) before main() quiets logging
    assert main(["incidents", "-c", str(site.config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["ID", "STATE", "RULE", "ROOT"]
    # resolved 30 s ago is the newest change, then incident 1, then 3
    assert [line.split()[0] for line in out[1:4]] == [
        made[1].incident_id[:12],
        made[0].incident_id[:12],
        made[2].incident_id[:12],
    ]
    resolved = out[1].split()
    assert resolved[1:5] == ["resolved", "device_root", "device:core-1", "critical"]
    assert resolved[5:7] == ["3", "3"]
    assert "open (flapping)" in out[3]
    assert out[-1] == "3 incidents, newest change first"
    assert main(["incidents", "-c", str(site.config), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [b["id"] for b in body] == [
        made[1].incident_id,
        made[0].incident_id,
        made[2].incident_id,
    ]
    assert body[0]["inhibited"] == ["out-l1", "out-l2"]
    assert body[0]["details"] == {"cause": "reboot"}
    assert body[0]["resolved_at"] is not None
    assert body[0]["version"] == 3
    assert body[2]["flapping"] is True
    assert set(body[0]) == {
        "id", "rule", "root", "state", "severity", "summary", "members", "evidence",
        "inhibited", "opened_at", "updated_at", "resolved_at", "site", "flapping",
        "version", "details",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--state", "open"], [0, 2]),
        (["--state", "resolved"], [1]),
        (["--rule", "flapping"], [2]),
        (["--site", "west"], [2]),
        (["--device", "core-1"], [1]),
        # Absolute (NOW is fixed at import; a relative "90s" would drift under a long run).
        (["--since", (NOW - timedelta(seconds=90)).isoformat()], [1, 0]),
        (["--limit", "1"], [1]),
    ],
)
def test_filters(
    site: Site, args: list[str], expected: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each filter narrows the list as the API's does (the same parsing)."""
    made = _three()
    site.fill(made)
    capsys.readouterr()  # the store may log (migrations) before main() quiets logging
    assert main(["incidents", "-c", str(site.config), "--json", *args]) == 0
    ids = [b["id"] for b in json.loads(capsys.readouterr().out)]
    assert ids == [made[i].incident_id for i in expected]


def test_show_by_id_and_prefix(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """``--id`` shows one incident in full, by its id or a unique prefix; unknown → 1."""
    made = _three()
    site.fill(made)
    capsys.readouterr()  # the store may log (migrations) before main() quiets logging
    target = made[1]
    assert main(["incidents", "-c", str(site.config), "--id", target.incident_id]) == 0
    out = capsys.readouterr().out
    assert f"incident  {target.incident_id}" in out
    assert "state     resolved (version 3)" in out
    assert "  out-l1  (inhibited)" in out
    assert "  out-reboot\n" in out
    assert "members (3):" in out
    assert 'cause: "reboot"' in out
    assert (
        main(["incidents", "-c", str(site.config), "--id", target.incident_id[:12], "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["id"] == target.incident_id
    assert main(["incidents", "-c", str(site.config), "--id", "ffffffffffff"]) == 1
    assert "no incident with an id starting 'ffffffffffff'" in capsys.readouterr().err
    # every id here starts with two digits and "abab": that prefix is ambiguous
    assert main(["incidents", "-c", str(site.config), "--id", "0"]) == 1  # too short: exact only
    assert main(["incidents", "-c", str(site.config), "--id", made[0].incident_id[:2]]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "invalid --since 'yesterday'"),
        (["--limit", "0"], "invalid --limit 0: must be at least 1"),
        (["--id", " "], "--id needs an incident id"),
    ],
)
def test_bad_values_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad value exits 2 naming the option, before any store is touched."""
    config = tmp_path / "netcortex.yaml"
    config.write_text(f"store:\n  sqlite_path: {tmp_path / 'o.db'}\n", encoding="utf-8")
    assert main(["incidents", "-c", str(config), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.db").exists()


def test_unknown_choices_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    """--state and --rule only take their vocabularies (argparse exits 2)."""
    for args in (["--state", "closed"], ["--rule", "nope"]):
        with pytest.raises(SystemExit) as exited:
            main(["incidents", *args])
        assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` explains the command and shows examples."""
    with pytest.raises(SystemExit):
        main(["incidents", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "never creates a store" in out
    assert "netcortex incidents --rule cable_pair --since 1d" in out


def test_render_shows_age_of_open_and_time_of_resolved() -> None:
    """Open incidents show their age; resolved ones when they resolved."""
    made = _three()
    lines = render_incidents(made[:2], NOW).splitlines()
    assert lines[1].split()[-4] == "1m00s"  # opened a minute ago, still open
    resolved_at = (NOW - timedelta(seconds=30)).strftime("%Y-%m-%d %H:%M:%SZ")
    assert resolved_at in lines[2]
