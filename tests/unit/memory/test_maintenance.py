"""Unit tests for ``SqliteMaintenanceCalendar`` and the window config builder.

The calendar semantics are table-driven: every ``maintenance_cases/*.yaml`` file
holds windows (in the ``maintenance.windows`` config shape), checks
``(at, target) -> expected window id or null`` and ``next_change`` expectations.
Each file runs twice: against config windows, and against the same windows added
durably and read back after a reopen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from structlog.testing import capture_logs

from netcortex.config import StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.memory import MaintenanceCalendar, MaintenanceWindow
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import ConfigError, StoreError
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.memory.semantic.maintenance import (
    PROBE_BUDGET,
    SqliteMaintenanceCalendar,
    recurrence_problems,
    validate_window,
    window_problems,
    windows_from_config,
)
from netcortex.metrics import Registry
from netcortex.testing import make_event

CASES_DIR = Path(__file__).parent / "maintenance_cases"
CASE_FILES = sorted(CASES_DIR.glob("*.yaml"))
T0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)


def _instant(value: Any) -> datetime:
    """A YAML timestamp (string or already parsed) as an aware datetime."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    assert parsed.tzinfo is not None, f"case instants need an offset: {value!r}"
    return parsed


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data.get("windows"), f"{path.name}: no windows"
    assert data.get("checks"), f"{path.name}: no checks"
    return data


def _check_ids() -> list[Any]:
    params = []
    for path in CASE_FILES:
        data = _load(path)
        for i, check in enumerate(data["checks"]):
            params.append(pytest.param(path, check, id=f"{path.stem}:{i}:{check['at']}"))
    return params


def _assert_check(calendar: MaintenanceCalendar, check: dict[str, Any], where: str) -> None:
    found = calendar.active(
        _instant(check["at"]),
        device=check.get("device"),
        interface=check.get("interface"),
        site=check.get("site"),
        role=check.get("role"),
        tags=tuple(check.get("tags", ())),
    )
    got = found.id if found is not None else None
    assert got == check["expect"], f"{where}: {check}"


def _assert_changes(calendar: MaintenanceCalendar, data: dict[str, Any], where: str) -> None:
    for change in data.get("changes", ()):
        expect = change["expect"]
        want = _instant(expect) if expect is not None else None
        assert calendar.next_change(_instant(change["after"])) == want, f"{where}: {change}"


def _window(window_id: str = "w1", **kw: Any) -> MaintenanceWindow:
    fields: dict[str, Any] = {
        "id": window_id,
        "scope": "device",
        "target": "sw1",
        "start": T0,
        "end": T0 + timedelta(hours=2),
    }
    fields.update(kw)
    return MaintenanceWindow(**fields)


@pytest.fixture
async def calendar(tmp_path: Path) -> AsyncIterator[SqliteMaintenanceCalendar]:
    async with SqliteMaintenanceCalendar(tmp_path / "nc.db") as cal:
        yield cal


# ------------------------------------------------------------------ table-driven


def test_case_files_exist() -> None:
    """Every documented case family has its data file."""
    names = {p.stem for p in CASE_FILES}
    assert {
        "oneoff_bounds",
        "oneoff_midnight",
        "overlaps",
        "scopes",
        "weekly",
        "monthly_byday",
        "dst_amsterdam",
        "dst_new_york",
        "until_count",
    } <= names


@pytest.mark.parametrize(("path", "check"), _check_ids())
def test_case_config_windows(tmp_path: Path, path: Path, check: dict[str, Any]) -> None:
    """A case check gives the expected window id (or none) with config windows."""
    calendar = SqliteMaintenanceCalendar(
        tmp_path / "nc.db", windows=windows_from_config(_load(path)["windows"], source=path.name)
    )
    _assert_check(calendar, check, path.name)


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_case_next_change(tmp_path: Path, path: Path) -> None:
    """``next_change`` gives each case file's expected next start or end instant."""
    data = _load(path)
    calendar = SqliteMaintenanceCalendar(
        tmp_path / "nc.db", windows=windows_from_config(data["windows"], source=path.name)
    )
    _assert_changes(calendar, data, path.name)


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
async def test_case_stored_windows_after_reopen(tmp_path: Path, path: Path) -> None:
    """The same windows added durably answer every check identically after a reopen."""
    data = _load(path)
    windows = windows_from_config(data["windows"], source=path.name)
    async with SqliteMaintenanceCalendar(tmp_path / "nc.db") as first:
        for window in windows:
            await first.add(window)
    async with SqliteMaintenanceCalendar(tmp_path / "nc.db") as calendar:
        assert {w.id for w in calendar.windows()} == {w.id for w in windows}
        for check in data["checks"]:
            _assert_check(calendar, check, path.name)
        _assert_changes(calendar, data, path.name)


def test_checks_in_random_order_agree_with_fresh_calendars(tmp_path: Path) -> None:
    """Answers do not depend on the order of lookups (the per-window memo is exact)."""
    path = CASES_DIR / "dst_amsterdam.yaml"
    data = _load(path)
    windows = windows_from_config(data["windows"])
    shared = SqliteMaintenanceCalendar(tmp_path / "nc.db", windows=windows)
    for check in reversed(data["checks"]):
        _assert_check(shared, check, "reversed")
    for check in data["checks"][::3] + data["checks"][1::3] + data["checks"][2::3]:
        _assert_check(shared, check, "interleaved")


# ------------------------------------------------------------------ durability


async def test_added_window_survives_reopen_and_remove_is_durable(tmp_path: Path) -> None:
    """An added window is there after a reopen; a removed one stays gone."""
    path = tmp_path / "var" / "nc.db"
    window = _window("chg-42", reason="line card swap", timezone="Europe/Amsterdam")
    async with SqliteMaintenanceCalendar(path) as cal:
        await cal.add(window)
        assert cal.active(T0, device="sw1") == window
    async with SqliteMaintenanceCalendar(path) as cal:
        assert cal.windows() == [window]
        stored = cal.windows()[0]
        assert stored.start.tzinfo == ZoneInfo("Europe/Amsterdam")
        assert stored.reason == "line card swap"
        assert await cal.remove("chg-42") is True
        assert await cal.remove("chg-42") is False
        assert cal.active(T0, device="sw1") is None
    async with SqliteMaintenanceCalendar(path) as cal:
        assert cal.windows() == []


async def test_add_replaces_by_id_in_index_and_store(tmp_path: Path) -> None:
    """Adding a window with an existing id replaces it, including its index entry."""
    path = tmp_path / "nc.db"
    async with SqliteMaintenanceCalendar(path) as cal:
        await cal.add(_window("w1", target="sw1"))
        await cal.add(_window("w1", target="sw2"))
        assert cal.active(T0, device="sw1") is None
        assert cal.active(T0, device="sw2") is not None
    async with SqliteMaintenanceCalendar(path) as cal:
        assert [w.target for w in cal.windows()] == ["sw2"]


async def test_calendar_shares_the_outcome_store_file(tmp_path: Path) -> None:
    """The calendar and the outcome store use one SQLite file side by side (WAL)."""
    path = tmp_path / "nc.db"
    async with (
        SqliteOutcomeStore(StoreConfig(sqlite_path=path)) as store,
        SqliteMaintenanceCalendar(path) as cal,
    ):
        await cal.add(_window())
        outcome = ReflexOutcome.for_event(
            "link_down", make_event("link_down"), severity=Severity.INFO, summary="x"
        )
        await store.record(outcome)
        await store.flush()
        assert await store.get(outcome.outcome_id) is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM maintenance_windows").fetchone()[0] == 1


async def test_invalid_stored_row_is_skipped_with_a_warning(tmp_path: Path) -> None:
    """A stored window that no longer validates is skipped and logged, not fatal."""
    path = tmp_path / "nc.db"
    async with SqliteMaintenanceCalendar(path) as cal:
        await cal.add(_window("good"))
        await cal.add(_window("bad", target="sw2"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE maintenance_windows SET timezone = 'Mars/Olympus' WHERE id = 'bad'")
    with capture_logs() as logs:
        async with SqliteMaintenanceCalendar(path) as cal:
            assert [w.id for w in cal.windows()] == ["good"]
    warned = [e for e in logs if e["event"] == "maintenance_window_invalid"]
    assert warned
    assert warned[0]["window_id"] == "bad"


async def test_start_maps_sqlite_errors_to_store_error(tmp_path: Path) -> None:
    """A path that cannot be opened as a database raises ``StoreError``."""
    (tmp_path / "dir.db").mkdir()
    cal = SqliteMaintenanceCalendar(tmp_path / "dir.db")
    with pytest.raises(StoreError, match="sqlite open failed"):
        await cal.start()
    await cal.close()


async def test_add_and_remove_need_an_open_calendar(tmp_path: Path) -> None:
    """``add`` and ``remove`` before ``start`` or after ``close`` raise ``StoreError``."""
    cal = SqliteMaintenanceCalendar(tmp_path / "nc.db")
    with pytest.raises(StoreError, match="not open"):
        await cal.add(_window())
    await cal.start()
    await cal.close()
    await cal.close()
    with pytest.raises(StoreError, match="not open"):
        await cal.remove("w1")


# ------------------------------------------------------------------ config windows


async def test_config_windows_cannot_be_removed_or_replaced(tmp_path: Path) -> None:
    """A config-owned window is neither removable nor replaceable at run time."""
    async with SqliteMaintenanceCalendar(tmp_path / "nc.db", windows=[_window("cfg")]) as cal:
        with pytest.raises(StoreError, match="config file"):
            await cal.remove("cfg")
        with pytest.raises(StoreError, match="config file"):
            await cal.add(_window("cfg", target="sw9"))
        assert cal.active(T0, device="sw1") is not None


async def test_config_window_shadows_stored_window_with_its_id(tmp_path: Path) -> None:
    """A stored window whose id is now a config window is shadowed, with a warning."""
    path = tmp_path / "nc.db"
    async with SqliteMaintenanceCalendar(path) as cal:
        await cal.add(_window("w1", target="stored"))
    with capture_logs() as logs:
        async with SqliteMaintenanceCalendar(path, windows=[_window("w1")]) as cal:
            assert [w.target for w in cal.windows()] == ["sw1"]
    assert any(e["event"] == "maintenance_window_shadowed" for e in logs)


def test_config_windows_answer_before_start(tmp_path: Path) -> None:
    """Config windows are indexed at construction: lookups need no ``start``."""
    cal = SqliteMaintenanceCalendar(tmp_path / "nc.db", windows=[_window()])
    assert cal.active(T0, device="sw1") is not None
    assert not (tmp_path / "nc.db").exists()


def test_duplicate_config_ids_are_refused(tmp_path: Path) -> None:
    """Two config windows with one id are a ``ValueError`` at construction."""
    with pytest.raises(ValueError, match="duplicate"):
        SqliteMaintenanceCalendar(tmp_path / "nc.db", windows=[_window(), _window()])


def test_windows_from_config_reports_every_problem_at_once() -> None:
    """Every bad entry (and a duplicate id) is named in one ``ConfigError``."""
    items = [
        {"id": "ok", "scope": "device", "target": "sw1", "start": "2025-06-01T10:00:00Z",
         "duration": 60},
        {"id": "bad scope", "scope": "rack", "target": "r1", "start": "2025-06-01T10:00:00Z",
         "end": "2025-06-01T11:00:00Z"},
        {"id": "x", "scope": "device", "target": "sw1", "start": "2025-06-01T10:00:00Z"},
        {"id": "y", "scope": "device", "target": "sw1", "start": "2025-06-01T10:00:00Z",
         "end": "2025-06-01T11:00:00Z", "timezone": "Mars/Olympus"},
        {"id": "z", "scope": "device", "target": "sw1", "start": "2025-06-01T10:00:00Z",
         "end": "2025-06-01T11:00:00Z", "rrule": "FREQ=FORTNIGHTLY"},
        {"id": "ok", "scope": "device", "target": "sw2", "start": "2025-06-01T10:00:00Z",
         "duration": 60, "colour": "red"},
        {"id": "ok", "scope": "device", "target": "sw2", "start": "2025-06-01T10:00:00Z",
         "duration": 60},
    ]  # fmt: skip
    with pytest.raises(ConfigError) as info:
        windows_from_config(items, source="netcortex.yaml")
    keys = [key for _, key, _ in info.value.problems]
    assert all(origin == "netcortex.yaml" for origin, _, _ in info.value.problems)
    assert "maintenance.windows.1.scope" in keys
    assert "maintenance.windows.5.colour" in keys
    assert "maintenance.windows.6.id" in keys
    text = str(info.value)
    for needle in ("exactly one of end and duration", "Mars/Olympus", "FORTNIGHTLY", "duplicate"):
        assert needle in text
    assert len(info.value.problems) == 6


def test_config_model_converts_naive_times_and_duration() -> None:
    """Naive config times are wall clock in ``timezone``; ``duration`` is absolute."""
    (window,) = windows_from_config(
        [{"id": "n", "scope": "site", "target": "north", "start": "2025-03-30T01:00:00",
          "duration": "PT4H", "timezone": "Europe/Amsterdam"}]
    )  # fmt: skip
    assert window.start == datetime(2025, 3, 30, 0, 0, tzinfo=UTC)
    # (subtract in UTC: same-zone datetime arithmetic is wall-clock arithmetic)
    assert window.end.astimezone(UTC) - window.start.astimezone(UTC) == timedelta(hours=4)
    assert window.end == datetime(2025, 3, 30, 4, 0, tzinfo=UTC)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"scope": "rack"}, "scope", "not one of"),
        ({"id": "two words"}, "id", "plain token"),
        ({"id": ""}, "id", "plain token"),
        ({"target": ""}, "target", "non-empty"),
        ({"scope": "interface", "target": "sw1"}, "target", "device|interface"),
        ({"scope": "device", "target": "sw1|Gi1"}, "target", "may not contain"),
        ({"end": T0}, "end", "not after start"),
        ({"start": T0.replace(tzinfo=None)}, "start", "timezone-aware"),
        ({"end": T0 + timedelta(seconds=1.5)}, "end", "whole seconds"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown IANA"),
        ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "rrule", "invalid rrule"),
        ({"rrule": "BYDAY=SU"}, "rrule", "no FREQ"),
        ({"rrule": "FREQ=MINUTELY"}, "rrule", "faster than hourly"),
        ({"rrule": "DTSTART:20250101T000000Z\nRRULE:FREQ=DAILY"}, "rrule", "one RRULE"),
        ({"rrule": "FREQ=DAILY;DTSTART=20250101T000000Z"}, "rrule", "DTSTART"),
    ],
)
async def test_invalid_windows_are_refused_with_a_clear_message(
    calendar: SqliteMaintenanceCalendar, changes: dict[str, Any], field: str, message: str
) -> None:
    """``add`` refuses an invalid window with a ``ValueError`` naming the field."""
    window = dataclasses.replace(_window(), **changes)
    with pytest.raises(ValueError, match=message) as info:
        await calendar.add(window)
    assert f"{field}:" in str(info.value)
    assert calendar.windows() == []


def test_validation_names_every_problem() -> None:
    """One ``ValueError`` lists all problems of a window."""
    window = _window("bad id", scope="rack", end=T0, timezone="Nowhere/Land")
    with pytest.raises(ValueError, match=r"id:.*scope:.*end:.*timezone:"):
        validate_window(window)


def test_naive_instants_are_refused(tmp_path: Path) -> None:
    """``active`` and ``next_change`` refuse naive datetimes."""
    cal = SqliteMaintenanceCalendar(tmp_path / "nc.db", windows=[_window()])
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.active(datetime(2025, 6, 1, 10, 0), device="sw1")
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.next_change(datetime(2025, 6, 1, 10, 0))


# ------------------------------------------------------------------ next_change, windows


def test_next_change_over_one_off_and_recurring_windows(tmp_path: Path) -> None:
    """``next_change`` walks starts and ends of every window, then gives ``None``."""
    daily = _window("daily", target="sw2", start=T0 + timedelta(minutes=30),
                    end=T0 + timedelta(minutes=45), rrule="FREQ=DAILY;COUNT=2")  # fmt: skip
    cal = SqliteMaintenanceCalendar(tmp_path / "nc.db", windows=[_window(), daily])
    seen = []
    at = T0 - timedelta(hours=1)
    while (at := cal.next_change(at)) is not None:  # type: ignore[assignment]
        seen.append(at)
    assert seen == [
        T0,
        T0 + timedelta(minutes=30),
        T0 + timedelta(minutes=45),
        T0 + timedelta(hours=2),
        T0 + timedelta(days=1, minutes=30),
        T0 + timedelta(days=1, minutes=45),
    ]


def test_windows_are_ordered_by_start(tmp_path: Path) -> None:
    """``windows()`` lists config and stored windows ordered by start, then id."""
    later = _window("a-later", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=3))
    cal = SqliteMaintenanceCalendar(tmp_path / "nc.db", windows=[later, _window("b"), _window("a")])
    assert [w.id for w in cal.windows()] == ["a", "b", "a-later"]


# ------------------------------------------------------------------ the index


def test_active_examines_only_the_targets_windows(tmp_path: Path) -> None:
    """10,000 windows on other targets do not change how many windows a lookup examines."""

    def examined(extra: int) -> tuple[float, str | None]:
        registry = Registry()
        windows = [
            _window("mine", rrule="FREQ=WEEKLY"),
            _window("site", scope="site", target="north"),
        ]
        for i in range(extra):
            rrule = "FREQ=DAILY" if i % 2 else None
            windows.append(_window(f"o{i}", target=f"other{i}", rrule=rrule))
            if i % 100 == 0:
                windows.append(_window(f"s{i}", scope="site", target=f"site{i}"))
        cal = SqliteMaintenanceCalendar(tmp_path / f"{extra}.db", windows=windows, metrics=registry)
        counter = registry.counter("netcortex_maintenance_windows_examined_total", "")
        found = None
        for n in range(100):
            hit = cal.active(T0 + timedelta(seconds=n), device="sw1", site="north", tags=("x",))
            found = hit.id if hit else None
        return counter.value() / 100, found

    alone, found_alone = examined(0)
    crowded, found_crowded = examined(10_000)
    assert alone == crowded == 2
    assert found_alone == found_crowded == "mine"


def test_lookup_metrics_count_results(tmp_path: Path) -> None:
    """Lookups are counted by result and windows by source."""
    registry = Registry()
    cal = SqliteMaintenanceCalendar(tmp_path / "nc.db", windows=[_window()], metrics=registry)
    cal.active(T0, device="sw1")
    cal.active(T0, device="sw2")
    lookups = registry.counter("netcortex_maintenance_lookups_total", "", ("result",))
    assert lookups.value(result="active") == 1
    assert lookups.value(result="none") == 1
    gauge = registry.gauge("netcortex_maintenance_windows", "", ("source",))
    assert gauge.value(source="config") == 1


async def test_add_and_remove_log_events(calendar: SqliteMaintenanceCalendar) -> None:
    """``add`` and ``remove`` log ``maintenance_window_added`` / ``_removed``."""
    with capture_logs() as logs:
        await calendar.add(_window())
        await calendar.remove("w1")
    events = [e["event"] for e in logs]
    assert events == ["maintenance_window_added", "maintenance_window_removed"]
    assert logs[0]["window_id"] == "w1"


def test_calendar_satisfies_the_protocol(tmp_path: Path) -> None:
    """``SqliteMaintenanceCalendar`` type-checks as a ``MaintenanceCalendar``."""
    cal: MaintenanceCalendar = SqliteMaintenanceCalendar(tmp_path / "nc.db")
    assert cal.windows() == []


def test_bounds_are_compared_as_instants_across_a_fold(tmp_path: Path) -> None:
    """02:30 CEST to 02:10 CET (fold=1) on the fall-back day is a valid 40-minute window."""
    ams = ZoneInfo("Europe/Amsterdam")
    start = datetime(2025, 10, 26, 2, 30, tzinfo=ams)
    end = datetime(2025, 10, 26, 2, 10, tzinfo=ams, fold=1)
    window = _window(start=start, end=end, timezone="Europe/Amsterdam")
    validate_window(window)
    cal = SqliteMaintenanceCalendar(tmp_path / "nc.db", windows=[window])
    assert cal.active(datetime(2025, 10, 26, 1, 9, 59, tzinfo=UTC), device="sw1") is not None
    assert cal.active(datetime(2025, 10, 26, 1, 10, tzinfo=UTC), device="sw1") is None


# ------------------------------------------------------------------ recurrence cost

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NEVER = "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"  # February 30th: dateutil walks to year 9999


@pytest.mark.timeout(30)  # an unguarded INTERVAL=0 hangs evaluation: fail instead
@pytest.mark.parametrize(
    ("rrule", "words"),
    [
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL=0"),
        ("FREQ=WEEKLY;INTERVAL=-2", "INTERVAL=-2"),
        ("RRULE:FREQ=DAILY;interval=0", "INTERVAL=0"),
        ("FREQ=DAILY;INTERVAL=1;INTERVAL=0", "INTERVAL=0"),  # the last counts, as in dateutil
        ("FREQ=DAILY;COUNT=0", "COUNT=0"),
        ("FREQ=DAILY;COUNT=-1", "COUNT=-1"),
    ],
)
def test_interval_and_count_below_one_are_invalid_rules(rrule: str, words: str) -> None:
    """The cheap rule check every path runs (``window_problems``, ``validate_window``,
    compiling a window) refuses INTERVAL/COUNT below 1, without evaluating the rule."""
    window = _window(rrule=rrule)
    problems = window_problems(window)
    assert [f for f, _ in problems] == ["rrule"]
    assert words in problems[0][1]
    with pytest.raises(ValueError, match=words):
        validate_window(window)
    with pytest.raises(ValueError, match=words):
        SqliteMaintenanceCalendar(Path("unused.db"), windows=[window])


@pytest.mark.timeout(30)
async def test_stored_row_with_interval_zero_is_skipped_not_evaluated(tmp_path: Path) -> None:
    """A stored row edited to INTERVAL=0 is skipped with a warning at load; lookups answer."""
    path = tmp_path / "nc.db"
    async with SqliteMaintenanceCalendar(path) as cal:
        await cal.add(_window("daily", rrule="FREQ=DAILY"))
        await cal.add(_window("other", target="sw2", rrule="FREQ=DAILY"))
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE maintenance_windows SET rrule = 'FREQ=DAILY;INTERVAL=0' WHERE id = 'daily'"
        )
    with capture_logs() as logs:
        async with SqliteMaintenanceCalendar(path) as cal:
            assert [w.id for w in cal.windows()] == ["other"]
            assert cal.active(T0 + timedelta(days=3), device="sw1") is None
            assert cal.active(T0 + timedelta(days=3), device="sw2") is not None
    (warned,) = [e for e in logs if e["event"] == "maintenance_window_invalid"]
    assert warned["window_id"] == "daily"
    assert "INTERVAL=0" in warned["error"]


@pytest.mark.parametrize(
    ("rrule", "start", "field", "words"),
    [
        ("FREQ=HOURLY;BYMINUTE=0,1,2", T0, "rrule", "less than an hour apart"),
        ("FREQ=HOURLY", datetime(1, 1, 1, tzinfo=UTC), "start", "occurrences"),
        ("FREQ=YEARLY;INTERVAL=50", T0, "rrule", "no occurrence within 10 years"),
        (NEVER, T0, "rrule", "ever match|no occurrence"),
    ],
)
async def test_add_refuses_rules_expensive_to_evaluate(
    tmp_path: Path,
    calendar: SqliteMaintenanceCalendar,
    rrule: str,
    start: datetime,
    field: str,
    words: str,
) -> None:
    """``add`` runs ``recurrence_problems``: a ``ValueError`` naming the field, nothing stored."""
    window = _window(rrule=rrule, start=start, end=start + timedelta(minutes=30))
    assert window_problems(window) == []  # valid as a rule: only the cost check refuses it
    with pytest.raises(ValueError, match=words) as info:
        await calendar.add(window)
    assert f"invalid maintenance window 'w1': {field}:" in str(info.value)
    assert calendar.windows() == []
    with sqlite3.connect(tmp_path / "nc.db") as conn:  # the fixture's file: nothing written
        assert conn.execute("SELECT count(*) FROM maintenance_windows").fetchone()[0] == 0


async def test_add_probes_the_rule_off_the_event_loop(calendar: SqliteMaintenanceCalendar) -> None:
    """The probe runs on a worker thread: ``add``'s first step returns to the loop with
    the probe still pending (run inline, the add would be over after that step)."""
    task = asyncio.create_task(calendar.add(_window(rrule="FREQ=HOURLY;BYMINUTE=0,30")))
    await asyncio.sleep(0)  # the add task takes its first step
    assert not task.done()
    with pytest.raises(ValueError, match="less than an hour apart"):
        await task


async def test_add_accepts_ordinary_recurring_windows(calendar: SqliteMaintenanceCalendar) -> None:
    """Everyday rules pass the cost check and are stored (a one-off window is not probed)."""
    weekly = _window("weekly", rrule="FREQ=WEEKLY;BYDAY=SU")
    hourly = _window("hourly", target="sw2", start=T0, end=T0 + timedelta(minutes=10),
                     rrule="FREQ=HOURLY;UNTIL=20250602T000000Z")  # fmt: skip
    await calendar.add(weekly)
    await calendar.add(hourly)
    await calendar.add(_window("once", target="sw3"))
    assert {w.id for w in calendar.windows()} == {"weekly", "hourly", "once"}


def test_the_cost_probe_stays_out_of_validation(tmp_path: Path) -> None:
    """``window_problems`` (every reload, every compiled window) does not probe: a rule
    that never matches or is sub-hourly through BYMINUTE is a valid *rule*, refused only
    by ``recurrence_problems`` where windows come in."""
    for rrule in (NEVER, "FREQ=HOURLY;BYMINUTE=0,1,2"):
        window = _window(start=NOW, end=NOW + timedelta(hours=1), rrule=rrule)
        assert window_problems(window) == []
        SqliteMaintenanceCalendar(tmp_path / "nc.db", windows=[window])  # compiles, unprobed
    # ... while the probe refuses it (NEVER: see the time-budget test below)
    assert [f for f, _ in recurrence_problems(window, now=NOW)] == ["rrule"]


def test_a_rule_never_matching_is_refused_by_the_time_budget() -> None:
    """dateutil cannot be stopped while it looks for a match that never comes (it walks
    to year 9999): the walk gets ``budget`` seconds, then the rule is refused."""
    never = _window(start=NOW, end=NOW + timedelta(hours=1), rrule=NEVER)
    t0 = time.perf_counter()
    problems = recurrence_problems(never, now=NOW, budget=0.05)
    assert time.perf_counter() - t0 < 1.0
    assert [f for f, _ in problems] == ["rrule"]
    assert "does it ever match" in problems[0][1]


@pytest.mark.parametrize(
    ("rrule", "start"),
    [
        (None, NOW - timedelta(days=3650)),  # one-off: nothing to walk
        ("FREQ=WEEKLY;BYDAY=SU", datetime(2019, 1, 6, 2, tzinfo=UTC)),
        ("FREQ=DAILY;UNTIL=20260101T000000Z", datetime(2025, 1, 1, 2, tzinfo=UTC)),  # over
        ("FREQ=DAILY;COUNT=3", datetime(2020, 1, 1, 2, tzinfo=UTC)),  # exhausted long ago
        ("FREQ=HOURLY", NOW),
        ("FREQ=DAILY;BYHOUR=1,2,3", NOW),  # exactly an hour apart
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", datetime(2024, 2, 29, tzinfo=UTC)),  # leap days
    ],
)
def test_recurrence_problems_pass_ordinary_windows(rrule: str | None, start: datetime) -> None:
    """Real maintenance windows have no recurrence problems, well within the budget."""
    window = _window(start=start, end=start + timedelta(minutes=30), rrule=rrule)
    t0 = time.perf_counter()
    assert recurrence_problems(window, now=NOW) == []
    assert time.perf_counter() - t0 < PROBE_BUDGET
