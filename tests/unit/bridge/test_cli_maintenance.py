"""Unit tests for ``netcortex maintenance add|list|remove`` (bridge/cli.py)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from netcortex.app import Engine
from netcortex.bridge.cli import UsageError, main, parse_duration, parse_when
from netcortex.config import load_config

AMS = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 3, 1, 12, 0, 7, 123456, tzinfo=UTC)

#: A weekly Sunday 02:00-05:00 Amsterdam window on the config file.
CONFIG_WINDOW = {
    "id": "cfg-sundays",
    "scope": "site",
    "target": "north",
    "start": "2026-01-04T02:00:00",
    "duration": 10800,
    "rrule": "FREQ=WEEKLY;BYDAY=SU",
    "timezone": "Europe/Amsterdam",
    "reason": "weekly changes",
}


#: Commands configure logging for the process; ``restore_logging`` puts it back.
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config naming a store under ``tmp_path`` and holding one config window."""
    path = tmp_path / "netcortex.yaml"
    data = {
        "store": {"sqlite_path": str(tmp_path / "var" / "nc.db")},
        "trap": {"enabled": False},
        "maintenance": {"windows": [CONFIG_WINDOW]},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _db(config_file: Path) -> Path:
    return config_file.parent / "var" / "nc.db"


def _add(config_file: Path, window_id: str, *extra: str) -> int:
    return main(["maintenance", "add", window_id, "--config", str(config_file), *extra])


def _list_json(
    config_file: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> list[dict[str, Any]]:
    assert main(["maintenance", "list", "--config", str(config_file), "--json", *extra]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


# ---------------------------------------------------------------- value parsing


class TestParsing:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("3600", 3600), ("3600s", 3600), ("90m", 5400), ("2h", 7200), ("1h30m", 5400),
         ("1d", 86400), ("1w", 604800), (" 45 min ", 2700)],
    )  # fmt: skip
    def test_durations(self, text: str, seconds: int) -> None:
        """``--duration`` takes seconds or unit spans, summed."""
        assert parse_duration(text) == timedelta(seconds=seconds)

    @pytest.mark.parametrize("text", ["0", "0m", "1.5h", "-2h", "2x", "", "h"])
    def test_bad_durations(self, text: str) -> None:
        """Anything else (zero, fractions, junk) is a usage error naming ``--duration``."""
        with pytest.raises(UsageError, match="--duration"):
            parse_duration(text)

    def test_naive_time_is_wall_clock_in_the_zone(self) -> None:
        """A naive ``WHEN`` is local time in ``--timezone``."""
        got = parse_when("2026-07-05T02:00:00", AMS, option="--start")
        assert got == datetime(2026, 7, 5, 0, 0, tzinfo=UTC)
        assert got.tzinfo is AMS

    def test_offset_keeps_the_instant(self) -> None:
        """An explicit offset or ``Z`` is an instant, shown in the zone."""
        got = parse_when("2026-07-05T00:00:00Z", AMS, option="--start")
        assert got == datetime(2026, 7, 5, 0, 0, tzinfo=UTC)
        assert got.utcoffset() == timedelta(hours=2)

    def test_now_is_truncated_to_whole_seconds(self) -> None:
        """``now`` is the current second (windows have second precision)."""
        got = parse_when("now", AMS, option="--start", now=NOW)
        assert got == NOW.replace(microsecond=0)

    @pytest.mark.parametrize("text", ["tomorrow", "2026-07-05T02:00:00.5", "2h"])
    def test_bad_times_name_the_option(self, text: str) -> None:
        """Unparseable or sub-second times are usage errors naming the option."""
        with pytest.raises(UsageError, match="--end"):
            parse_when(text, AMS, option="--end")


# ---------------------------------------------------------------- add / list / remove


def test_help_explains_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """``maintenance add --help`` explains scopes, bounds, recurrence and examples."""
    with pytest.raises(SystemExit) as exc:
        main(["maintenance", "add", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for words in ("--scope", "--duration", "[start, end)", "FREQ=WEEKLY", "Examples"):
        assert words in out


def test_add_list_remove_round_trip(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A window added with the CLI is listed from the store and removed again (exit codes)."""
    assert not _db(config_file).exists()
    assert (
        _add(
            config_file, "sw1-card",
            "--scope", "device", "--target", "sw1-north",
            "--start", "2026-12-06T22:00:00", "--duration", "2h",
            "--timezone", "Europe/Amsterdam", "--reason", "line card swap",
        )
        == 0
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "added maintenance window sw1-card" in out
    assert _db(config_file).exists()

    rows = _list_json(config_file, capsys, "--active-at", "2026-12-06T21:30:00Z")
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {"cfg-sundays", "sw1-card"}
    card = by_id["sw1-card"]
    assert card == {
        "id": "sw1-card", "scope": "device", "target": "sw1-north",
        "start": "2026-12-06T22:00:00+01:00", "end": "2026-12-07T00:00:00+01:00",
        "rrule": None, "timezone": "Europe/Amsterdam", "reason": "line card swap",
        "source": "store", "active": True,
    }  # fmt: skip
    assert by_id["cfg-sundays"]["source"] == "config"
    assert by_id["cfg-sundays"]["active"] is False  # a Sunday, but 22:30 local

    assert main(["maintenance", "remove", "sw1-card", "--config", str(config_file)]) == 0
    assert "removed maintenance window sw1-card" in capsys.readouterr().out
    assert [r["id"] for r in _list_json(config_file, capsys)] == ["cfg-sundays"]
    assert main(["maintenance", "remove", "sw1-card", "--config", str(config_file)]) == 1
    assert "no stored window 'sw1-card'" in capsys.readouterr().err


def test_table_lists_every_column(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table shows id, scope, target, bounds, rrule, zone, source and ACTIVE, plus a count."""
    assert (
        _add(config_file, "now-win", "--scope", "tag", "--target", "core",
             "--start", "now", "--end", "2099-01-01T00:00:00Z")
        == 0
    )  # fmt: skip
    capsys.readouterr()
    assert main(["maintenance", "list", "--config", str(config_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID", "SCOPE", "TARGET", "START", "END", "RRULE", "TIMEZONE", "SOURCE", "ACTIVE", "REASON",
    ]  # fmt: skip
    cfg = next(line for line in lines if line.startswith("cfg-sundays"))
    assert cfg.split()[1:9] == [
        "site", "north", "2026-01-04T02:00:00+01:00", "2026-01-04T05:00:00+01:00",
        "FREQ=WEEKLY;BYDAY=SU", "Europe/Amsterdam", "config", "no",
    ]  # fmt: skip
    now_win = next(line for line in lines if line.startswith("now-win"))
    assert now_win.split()[-2:] == ["store", "yes"]
    assert lines[-1].startswith("2 windows (1 config, 1 store), 1 active at ")


@pytest.mark.parametrize(
    ("at", "active"),
    [
        ("2026-03-29T00:59:59Z", False),  # 01:59:59 CET, before the start
        ("2026-03-29T01:00:00Z", True),  # 02:00 CET does not exist: 03:00 CEST
        ("2026-03-29T03:59:59Z", True),  # three hours elapsed, minus one second
        ("2026-03-29T04:00:00Z", False),  # end exclusive
        ("2026-07-05T00:00:00Z", True),  # summer: 02:00 CEST
        ("2026-07-05T01:00:00Z", True),
    ],
)
def test_active_at_follows_the_recurrence_across_dst(
    config_file: Path, capsys: pytest.CaptureFixture[str], at: str, active: bool
) -> None:
    """``--active-at`` evaluates the RRULE in the window's zone, DST included."""
    (row,) = _list_json(config_file, capsys, "--active-at", at)
    assert row["active"] is active


def test_list_without_a_store_shows_config_windows_and_creates_nothing(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listing before the engine ever ran shows the config windows and writes no file."""
    assert [r["id"] for r in _list_json(config_file, capsys)] == ["cfg-sundays"]
    assert not _db(config_file).exists()
    assert main(["maintenance", "remove", "x", "--config", str(config_file)]) == 1
    assert not _db(config_file).exists()


def test_config_windows_are_refused_with_exit_2(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config window can be neither removed nor replaced from the CLI (exit 2, clear message)."""
    assert main(["maintenance", "remove", "cfg-sundays", "--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert "comes from the config file" in err
    assert str(config_file) in err
    assert (
        _add(config_file, "cfg-sundays", "--scope", "device", "--target", "x",
             "--start", "now", "--duration", "1h")
        == 2
    )  # fmt: skip
    assert "comes from the config file" in capsys.readouterr().err
    assert not _db(config_file).exists()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["bad!", "--scope", "device", "--target", "x", "--start", "now", "--duration", "1h"],
         "ID"),
        (["w", "--scope", "interface", "--target", "sw1", "--start", "now", "--duration", "1h"],
         "--target"),
        (["w", "--scope", "device", "--target", "x", "--start", "soon", "--duration", "1h"],
         "--start"),
        (["w", "--scope", "device", "--target", "x", "--start", "now",
          "--end", "2000-01-01T00:00:00"], "--end/--duration"),
        (["w", "--scope", "device", "--target", "x", "--start", "now", "--duration", "1.5h"],
         "--duration"),
        (["w", "--scope", "device", "--target", "x", "--start", "now", "--duration", "1h",
          "--rrule", "FREQ=MINUTELY"], "--rrule"),
        (["w", "--scope", "device", "--target", "x", "--start", "now", "--duration", "1h",
          "--rrule", "BYDAY=SU"], "--rrule"),
        (["w", "--scope", "device", "--target", "x", "--start", "now", "--duration", "1h",
          "--timezone", "Mars/Olympus"], "--timezone"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_option(
    config_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    """An invalid window exits 2 with a message naming the option, and stores nothing."""
    assert main(["maintenance", "add", "--config", str(config_file), *args]) == 2
    err = capsys.readouterr().err
    assert f"invalid {option}" in err
    assert capsys.readouterr().out == ""
    assert not _db(config_file).exists()


def test_every_problem_is_reported_at_once(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Several bad options are all named in one run."""
    code = _add(
        config_file, "w", "--scope", "device", "--target", "x",
        "--start", "2026-01-01T10:00:00.5", "--end", "later", "--timezone", "Nowhere/Zone",
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    for option in ("--timezone", "--start", "--end"):
        assert f"invalid {option}" in err


def test_missing_span_is_an_argparse_usage_error(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``add`` needs one of ``--end`` and ``--duration`` (argparse exits 2)."""
    with pytest.raises(SystemExit) as exc:
        _add(config_file, "w", "--scope", "device", "--target", "x", "--start", "now")
    assert exc.value.code == 2
    assert "--end" in capsys.readouterr().err


def test_in_memory_store_path_is_refused_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``store.sqlite_path: ':memory:'`` cannot keep windows: ``add`` says so and exits 1
    (no traceback)."""
    path = tmp_path / "memory.yaml"
    path.write_text(yaml.safe_dump({"store": {"sqlite_path": ":memory:"}}), encoding="utf-8")
    code = _add(
        path, "w", "--scope", "device", "--target", "x", "--start", "now", "--duration", "1h"
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "':memory:'" in err
    assert "Traceback" not in err


def test_bad_config_window_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config window the calendar refuses (bad rrule) makes every subcommand exit 2."""
    path = tmp_path / "bad.yaml"
    bad = {**CONFIG_WINDOW, "rrule": "FREQ=MINUTELY"}
    path.write_text(
        yaml.safe_dump(
            {"store": {"sqlite_path": str(tmp_path / "nc.db")}, "maintenance": {"windows": [bad]}}
        ),
        encoding="utf-8",
    )
    assert main(["maintenance", "list", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "maintenance.windows.0" in err
    assert "rrule" in err


def test_stdout_stays_clean_when_the_calendar_warns(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Warnings (an unreadable stored row) go to stderr; ``--json`` stdout still parses."""
    assert (
        _add(config_file, "w1", "--scope", "device", "--target", "x",
             "--start", "now", "--duration", "1h")
        == 0
    )  # fmt: skip
    capsys.readouterr()
    with sqlite3.connect(_db(config_file)) as conn:
        conn.execute("UPDATE maintenance_windows SET timezone = 'Mars/Olympus'")
    rows = _list_json(config_file, capsys)  # parses stdout as JSON
    assert [r["id"] for r in rows] == ["cfg-sundays"]
    assert main(["maintenance", "list", "--config", str(config_file), "--json"]) == 0
    captured = capsys.readouterr()
    assert "maintenance_window_invalid" in captured.err
    assert "maintenance_window_invalid" not in captured.out


# ---------------------------------------------------------------- a running engine


async def _eventually(cond: Callable[[], bool], what: str, deadline: float = 10.0) -> None:
    """Poll ``cond`` until it holds; fail after ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    while not cond():
        if loop.time() > until:
            pytest.fail(f"not within {deadline} s: {what}")
        await asyncio.sleep(0.02)


async def test_running_engine_follows_cli_add_and_remove(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A window added and removed with the CLI reaches a running engine without a restart."""
    config = load_config(config_file)
    async with Engine(config) as engine:
        calendar = engine.calendar
        now = datetime.now(UTC)
        assert calendar.active(now, device="sw7") is None
        code = await asyncio.to_thread(
            main,
            ["maintenance", "add", "live", "--config", str(config_file), "--scope", "device",
             "--target", "sw7", "--start", "now", "--duration", "1h"],
        )  # fmt: skip
        assert code == 0

        def covered() -> bool:
            found = calendar.active(datetime.now(UTC), device="sw7", interface="Gi0/1")
            return found is not None and found.id == "live"

        await _eventually(covered, "the engine's calendar has the CLI's window")
        assert {w.id for w in calendar.windows()} == {"cfg-sundays", "live"}

        code = await asyncio.to_thread(
            main, ["maintenance", "remove", "live", "--config", str(config_file)]
        )
        assert code == 0
        await _eventually(lambda: not covered(), "the engine's calendar dropped the window")
        assert [w.id for w in calendar.windows()] == ["cfg-sundays"]
    assert "added maintenance window live" in capsys.readouterr().out
