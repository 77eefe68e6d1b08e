"""``netcortex outbox``: counts, lists and requeues NetBox journal jobs on SQLite and
PostgreSQL, and never creates a store that does not exist.

Jobs are written the way the engine writes them: an outcome store with a
``JournalHook`` records outcomes (one job each, in the outcome's transaction);
the outbox itself then marks some delivered or dead, as the delivery worker would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from netcortex.app import make_outbox, make_store
from netcortex.bridge.cli import main, render_jobs
from netcortex.bridge.views import fmt_age, outbox_line
from netcortex.config import Config, load_config
from netcortex.contracts.events import Severity
from netcortex.contracts.outbox import JobState, Outbox, OutboxStats
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.memory.episodic.outbox import JournalHook
from netcortex.metrics import Registry
from netcortex.testing import make_event

pytestmark = pytest.mark.usefixtures("restore_logging")

_T = TypeVar("_T")


def _outcomes(n: int) -> list[ReflexOutcome]:
    now = datetime.now(UTC)
    made = []
    for i in range(n):
        event = make_event("link_down", device="sw1-north", interface=f"Gi1/0/{i}")
        outcome = ReflexOutcome.for_event(
            "link_down", event, severity=Severity.HIGH, summary=f"Gi1/0/{i} down"
        )
        made.append(replace(outcome, recorded_at=now - timedelta(minutes=i)))
    return made


@dataclass
class Site:
    """A config file on one backend, and ways to act on its store directly."""

    config: Path
    pg: tuple[str, str] | None = None  # (dsn, schema) on PostgreSQL

    def _store(self) -> Config:
        return load_config(str(self.config))

    def run(self, action: Callable[[Outbox], Awaitable[_T]]) -> _T:
        """``action`` on the store's outbox (started: creates the table if needed)."""

        async def go() -> _T:
            outbox = make_outbox(self._store().store)
            await outbox.start()
            try:
                return await action(outbox)
            finally:
                await outbox.close()

        return asyncio.run(go())

    def fill(self, outcomes: list[ReflexOutcome]) -> None:
        """Record ``outcomes`` as the engine does with journal.enabled: a job each."""

        async def go() -> None:
            store = make_store(self._store().store, Registry(), journal=JournalHook(_every))
            await store.start()
            try:
                for outcome in outcomes:
                    await store.record(outcome)
                await store.flush()
            finally:
                await store.close()

        asyncio.run(go())

    def pg_ledger_exists(self) -> bool:
        """Whether the PostgreSQL schema has the journal ledger (False on SQLite)."""
        if self.pg is None:
            return False
        dsn, schema = self.pg

        async def look() -> object:
            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                return await conn.fetchval("SELECT to_regclass($1)", f"{schema}.journal_migrations")
            finally:
                await conn.close()

        return asyncio.run(look()) is not None


def _every(_outcome: ReflexOutcome) -> bool:
    return True


@pytest.fixture(params=["sqlite", "postgres"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    """A config naming a store (SQLite file or PostgreSQL schema) not created yet."""
    path = tmp_path / "netcortex.yaml"
    if request.param == "sqlite":
        path.write_text(
            f"store:\n  sqlite_path: {tmp_path / 'outcomes.db'}\njournal:\n  enabled: false\n",
            encoding="utf-8",
        )
        return Site(path)
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")
    path.write_text(
        "store:\n  backend: postgres\n"
        f"  postgres_dsn: '{dsn}'\n  postgres_schema: {schema}\n"
        f"  sqlite_path: {tmp_path / 'must-not-exist.db'}\n",
        encoding="utf-8",
    )
    return Site(path, (dsn, schema))


def _filled(site: Site) -> list[ReflexOutcome]:
    """Five jobs: two pending, one delivered (entry 7), two dead."""
    made = _outcomes(5)
    site.fill(made)
    now = datetime.now(UTC)

    async def finish(outbox: Outbox) -> None:
        await outbox.delivered(made[2].outcome_id, 7, now)
        await outbox.dead(made[3].outcome_id, "404 device 'sw1-north' not in NetBox", now)
        await outbox.dead(made[4].outcome_id, "400 NetBox rejected the entry", now)

    site.run(finish)
    return made


def test_missing_store_is_refused_and_not_created(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a store the command exits 1, says so, and creates no file or table."""
    assert main(["outbox", "--config", str(site.config)]) == 1
    err = capsys.readouterr().err
    assert "no journal outbox" in err
    assert "has the engine run yet?" in err
    assert not (tmp_path / "outcomes.db").exists()
    assert not (tmp_path / "must-not-exist.db").exists()
    assert not site.pg_ledger_exists()


def test_counts_line_and_json(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """The default output is one line of counts with the oldest pending age; --json the
    same as an object."""
    _filled(site)
    capsys.readouterr()
    assert main(["outbox", "-c", str(site.config)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("2 pending (oldest ")
    assert out.rstrip().endswith("1 delivered, 2 dead")
    assert "journal.enabled is false" in err  # a note: leftovers are still shown
    assert main(["outbox", "-c", str(site.config), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["pending"] == 2
    assert body["delivered"] == 1
    assert body["dead"] == 2
    assert body["oldest_pending_at"] is not None
    assert 0 <= body["oldest_pending_age_seconds"] < 600


def test_list_states(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """``--list STATE`` shows that state's jobs with their errors; --json as objects."""
    made = _filled(site)
    capsys.readouterr()
    assert main(["outbox", "-c", str(site.config), "--list", "dead"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["JOB", "ID", "TARGET"]
    assert made[3].outcome_id in out
    assert "404 device 'sw1-north' not in NetBox" in out
    assert "2 dead jobs, oldest first" in out
    assert main(["outbox", "-c", str(site.config), "--list", "delivered", "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert [j["job_id"] for j in jobs] == [made[2].outcome_id]
    assert jobs[0]["entry_id"] == 7
    assert jobs[0]["state"] == "delivered"
    assert jobs[0]["finished_at"] is not None
    assert main(["outbox", "-c", str(site.config), "--list", "pending", "--limit", "1"]) == 0
    assert "limit 1 reached" in capsys.readouterr().out


def test_retry_dead_given_ids_then_all(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """``--retry-dead ID`` requeues that job; an id that is not dead exits 1; bare
    ``--retry-dead`` requeues the rest."""
    made = _filled(site)
    capsys.readouterr()
    assert main(["outbox", "-c", str(site.config), "--retry-dead", made[3].outcome_id]) == 0
    assert capsys.readouterr().out.strip() == "requeued 1 dead job"
    code = main(["outbox", "-c", str(site.config), "--retry-dead", made[0].outcome_id, "nope"])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == "requeued 0 dead jobs"
    assert "2 of the 2 given job ids are not dead jobs" in captured.err
    assert main(["outbox", "-c", str(site.config), "--retry-dead", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"requeued": 1}
    stats = site.run(lambda o: o.stats())
    assert (stats.pending, stats.delivered, stats.dead) == (4, 1, 0)
    pending = site.run(lambda o: o.jobs(JobState.PENDING))
    assert made[4].outcome_id in {j.job_id for j in pending}


def test_empty_outbox(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """A store without jobs reports zeros and no age."""
    site.fill([])
    capsys.readouterr()
    assert main(["outbox", "-c", str(site.config)]) == 0
    assert capsys.readouterr().out.strip() == "0 pending, 0 delivered, 0 dead"


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad state, --list with --retry-dead, or --limit 0 is a usage error (exit 2)."""
    config = tmp_path / "c.yaml"
    config.write_text(f"store:\n  sqlite_path: {tmp_path / 'x.db'}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["outbox", "-c", str(config), "--list", "lost"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["outbox", "-c", str(config), "--list", "dead", "--retry-dead"])
    assert exc.value.code == 2
    assert main(["outbox", "-c", str(config), "--list", "dead", "--limit", "0"]) == 2
    assert not (tmp_path / "x.db").exists()
    capsys.readouterr()


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """``outbox --help`` explains the states, the requeue and shows examples."""
    with pytest.raises(SystemExit):
        main(["outbox", "--help"])
    out = capsys.readouterr().out
    assert "--retry-dead" in out
    assert "Examples: netcortex outbox" in out


class TestRendering:
    def test_age(self) -> None:
        """Ages are short: seconds, minutes+seconds, hours+minutes, days+hours."""
        assert [fmt_age(s) for s in (-3, 42, 252, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == [
            "0s", "42s", "4m12s", "3h05m", "2d04h",
        ]  # fmt: skip

    def test_line(self) -> None:
        """The counts line groups thousands and names the oldest pending age."""
        now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        stats = OutboxStats(3, 1204, 2, now - timedelta(minutes=4, seconds=12))
        assert outbox_line(stats, now) == "3 pending (oldest 4m12s), 1,204 delivered, 2 dead"

    def test_table_without_jobs_is_a_header(self) -> None:
        """No jobs: only the header line."""
        assert render_jobs([]).startswith("JOB ID")
