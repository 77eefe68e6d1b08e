"""``netcortex replay``: recorded events through the real pipeline on a virtual clock.

The pipeline is the one ``netcortex run`` builds (built-in handlers, enrich on
the shared fixture inventory, dedup, correlator); only the clock is virtual:
every event is judged at its ``received_at``. Nothing here sleeps: pacing is
checked through an injected ``sleep`` and wall clock.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from netcortex.bridge.cli import main
from netcortex.bridge.record import encode_line, read_recording
from netcortex.bridge.replay import ReplayResult, VirtualClock, replay_events, sort_events
from netcortex.config import Config
from netcortex.contracts.events import SensoryEvent
from netcortex.contracts.reflex import outcome_id_for
from netcortex.testing import make_event
from tests.conftest import shared_fixture

#: The command configures logging for the process; ``restore_logging`` puts it back.
pytestmark = pytest.mark.usefixtures("restore_logging")

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SW1 = ("sw1-north", "GigabitEthernet1/0/3")
SW2 = ("sw2-north", "GigabitEthernet1/0/3")


def _config(tmp_path: Path) -> Config:
    return Config.model_validate(
        {
            "inventory": {
                "backend": "file",
                "path": str(shared_fixture("netbox", "inventory.json")),
            },
            "store": {"sqlite_path": str(tmp_path / "never-touched.db")},
        }
    )


def _event(cls: str, where: tuple[str, str], at: float, **kw: Any) -> SensoryEvent:
    event = make_event(cls, device=where[0], interface=where[1], **kw)
    moment = T0 + timedelta(seconds=at)
    return replace(event, received_at=moment, observed_at=moment)


def _cable_cut() -> list[SensoryEvent]:
    """Both ends of the fixture cable down, a repeat inside the dedup window, one back up."""
    return [
        _event("link_down", SW1, 0.0),
        _event("link_down", SW2, 0.5),
        _event("link_down", SW1, 10.0),
        _event("link_up", SW1, 20.0),
    ]


def _write(path: Path, events: list[SensoryEvent], extra: list[bytes] = ()) -> Path:  # type: ignore[assignment]
    path.write_bytes(b"".join(encode_line(e) for e in events) + b"".join(extra))
    return path


def _kinds(result: ReplayResult) -> list[tuple[str, str, str]]:
    return [(o.handler_id, o.target, o.kind.value) for o in result.outcomes]


async def test_cable_cut_replays_into_outcomes_and_one_incident(tmp_path: Path) -> None:
    """Both ends of the fixture cable down: the live outcome ids and kinds, one cable_pair incident
    opened at the second event's received_at, and the config's store untouched."""
    events = _cable_cut()
    result = await replay_events(events, _config(tmp_path))
    assert _kinds(result) == [
        ("link_down", "sw1-north|GigabitEthernet1/0/3", "logged"),
        ("link_down", "sw2-north|GigabitEthernet1/0/3", "logged"),
        ("link_down", "sw1-north|GigabitEthernet1/0/3", "skipped"),
        ("link_up", "sw1-north|GigabitEthernet1/0/3", "logged"),
    ]
    # the live ids: outcome_id_for(handler, event id)
    assert [o.outcome_id for o in result.outcomes] == [
        outcome_id_for(o.handler_id, e.id) for o, e in zip(result.outcomes, events, strict=True)
    ]
    (incident,) = result.incidents
    assert incident.rule == "cable_pair"
    assert incident.opened_at == events[1].received_at  # the virtual clock, not the wall's
    assert result.summary_line() == (
        "4 events → 4 outcomes (3 logged, 0 suppressed, 1 skipped) → 1 incident"
    )
    assert not (tmp_path / "never-touched.db").exists()


async def test_dedup_window_is_measured_on_the_virtual_clock(tmp_path: Path) -> None:
    """link_down's window is 60 s: a repeat 59 s later is skipped, one 61 s after the
    first is a new fact — although the replay takes milliseconds."""
    events = [
        _event("link_down", SW1, 0.0),
        _event("link_down", SW1, 59.0),
        _event("link_down", SW1, 61.0),
    ]
    result = await replay_events(events, _config(tmp_path))
    assert [k for _, _, k in _kinds(result)] == ["logged", "skipped", "logged"]


async def test_replaying_twice_gives_identical_output(tmp_path: Path) -> None:
    """Two replays of the same events print byte-identical JSON."""
    events = _cable_cut()
    first = await replay_events(events, _config(tmp_path))
    second = await replay_events(events, _config(tmp_path))
    assert json.dumps(first.to_dict()) == json.dumps(second.to_dict())
    assert first.outcomes
    assert first.incidents


async def test_speed_changes_only_the_waiting(tmp_path: Path) -> None:
    """Events 0.2 s apart: speed 1 waits 0.2 s before each later event, speed 0 never
    waits; the results (and the virtual clock each outcome saw) are the same."""
    events = [
        _event("link_down", SW1, 0.0),
        _event("link_down", SW2, 0.2),
        _event("link_up", SW1, 0.4),
    ]
    runs: dict[float, tuple[ReplayResult, list[float]]] = {}
    for speed in (1.0, 0.0, 2.0):
        now = [100.0]
        waits: list[float] = []

        async def sleep(seconds: float, now: list[float] = now, waits: list[float] = waits) -> None:
            waits.append(round(seconds, 6))
            now[0] += seconds

        result = await replay_events(
            events, _config(tmp_path), speed=speed, sleep=sleep, wall=lambda now=now: now[0]
        )
        runs[speed] = (result, waits)
    assert runs[1.0][1] == [0.2, 0.2]
    assert runs[2.0][1] == [0.1, 0.1]
    assert runs[0.0][1] == []
    docs = {json.dumps(r.to_dict()) for r, _ in runs.values()}
    assert len(docs) == 1
    seen = [o.recorded_at for o in runs[1.0][0].outcomes]
    assert seen == [e.received_at for e in events]


async def test_events_out_of_order_are_sorted(tmp_path: Path) -> None:
    """Events are replayed in received_at order whatever the file order."""
    events = _cable_cut()
    shuffled = [events[2], events[3], events[0], events[1]]
    assert sort_events(shuffled) == events
    result = await replay_events(shuffled, _config(tmp_path))
    in_order = await replay_events(events, _config(tmp_path))
    assert result.to_dict() == in_order.to_dict()
    # the earliest-received report of the fact is the logged one
    assert result.outcomes[0].event_id == events[0].id
    assert result.outcomes[0].kind.value == "logged"


async def test_no_events(tmp_path: Path) -> None:
    """No events: an empty result and a zero summary."""
    result = await replay_events([], _config(tmp_path))
    assert (result.events, result.outcomes, result.incidents) == (0, [], [])
    assert result.summary_line() == (
        "0 events → 0 outcomes (0 logged, 0 suppressed, 0 skipped) → 0 incidents"
    )


async def test_negative_speed_is_refused(tmp_path: Path) -> None:
    """A negative speed is a ValueError."""
    with pytest.raises(ValueError, match="speed"):
        await replay_events(_cable_cut(), _config(tmp_path), speed=-1)


def test_virtual_clock_never_goes_back() -> None:
    """The virtual clock only moves forward and needs an aware start."""
    clock = VirtualClock(T0)
    clock.advance(T0 + timedelta(seconds=5))
    clock.advance(T0)
    assert clock.now() == T0 + timedelta(seconds=5)
    assert clock.monotonic() == (T0 + timedelta(seconds=5)).timestamp()
    with pytest.raises(ValueError, match="timezone"):
        VirtualClock(datetime(2026, 1, 1))


# ---------------------------------------------------------------- the command


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "netcortex.yaml"
    inventory = shared_fixture("netbox", "inventory.json")
    path.write_text(
        f"inventory:\n  backend: file\n  path: {inventory}\n"
        f"store:\n  sqlite_path: {tmp_path / 'never-touched.db'}\n",
        encoding="utf-8",
    )
    return path


def test_cli_json_and_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad lines are skipped and named on stderr with their numbers; the good ones are replayed."""
    events = _cable_cut()
    good = [encode_line(e) for e in events]
    lines = [
        good[0],
        b"{not json\n",
        good[1],
        b"\n",  # blank: skipped, not bad
        b'{"schema_version": 99}\n',
        b"[1, 2]\n",
        good[2],
        good[3],
    ]
    rec = tmp_path / "events.jsonl"
    rec.write_bytes(b"".join(lines))
    code = main(["replay", str(rec), "--config", str(_config_file(tmp_path)), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["events"] == 4
    assert [b["line"] for b in doc["bad_lines"]] == [2, 5, 6]
    assert doc["by_kind"] == {"logged": 3, "skipped": 1, "suppressed": 0, "errored": 0}
    assert [i["rule"] for i in doc["incidents"]] == ["cable_pair"]
    for n in (2, 5, 6):
        assert f"events.jsonl:{n}: skipped" in err
    assert not (tmp_path / "never-touched.db").exists()


def test_cli_text_summary_and_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The text output is the summary line, then the outcome and incident tables."""
    rec = _write(tmp_path / "events.jsonl", _cable_cut())
    code = main(["replay", str(rec), "-c", str(_config_file(tmp_path)), "--speed", "0"])
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "4 events → 4 outcomes (3 logged, 0 suppressed, 1 skipped) → 1 incident"
    assert any(line.startswith("TIME (UTC)") and "HANDLER" in line for line in lines)
    assert any(line.startswith("ID") and "RULE" in line for line in lines)
    assert "cable_pair" in out


def test_cli_only_bad_lines_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file of only bad lines exits 1 and names every line."""
    rec = tmp_path / "junk.jsonl"
    rec.write_bytes(b"junk\n{}\n")
    code = main(["replay", str(rec), "-c", str(_config_file(tmp_path))])
    _, err = capsys.readouterr()
    assert code == 1
    assert "junk.jsonl:1: skipped" in err
    assert "junk.jsonl:2: skipped" in err
    assert "no valid event" in err


def test_cli_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty file is a successful replay of nothing."""
    rec = tmp_path / "empty.jsonl"
    rec.write_bytes(b"")
    code = main(["replay", str(rec), "-c", str(_config_file(tmp_path)), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    doc = json.loads(out)
    assert (doc["events"], doc["outcomes"], doc["incidents"], doc["bad_lines"]) == (0, [], [], [])


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that cannot be read exits 1."""
    code = main(["replay", str(tmp_path / "nope.jsonl"), "-c", str(_config_file(tmp_path))])
    _, err = capsys.readouterr()
    assert code == 1
    assert "cannot read" in err


def test_cli_negative_speed_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--speed -1 is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(tmp_path / "x.jsonl"), "--speed", "-1"])
    assert exc.value.code == 2
    assert "--speed" in capsys.readouterr().err


def test_cli_store_keeps_outcomes_and_incidents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--store PATH keeps the outcomes and the final incidents in that SQLite file."""
    import asyncio

    from netcortex.contracts.incidents import IncidentQuery
    from netcortex.contracts.memory import OutcomeQuery
    from netcortex.memory.episodic.incidents import SqliteIncidentStore
    from netcortex.memory.episodic.sqlite import SqliteOutcomeStore

    rec = _write(tmp_path / "events.jsonl", _cable_cut())
    kept = tmp_path / "replay.db"
    code = main(["replay", str(rec), "-c", str(_config_file(tmp_path)), "--store", str(kept)])
    capsys.readouterr()
    assert code == 0

    async def read() -> tuple[int, list[str]]:
        config = _config(tmp_path).store.model_copy(update={"sqlite_path": kept})
        store = SqliteOutcomeStore(config)
        await store.start()
        try:
            outcomes = await store.query(OutcomeQuery(limit=100))
        finally:
            await store.close()
        async with SqliteIncidentStore(kept) as incidents:
            found = await incidents.query(IncidentQuery(limit=10))
        return len(outcomes), [i.rule for i in found]

    assert asyncio.run(read()) == (4, ["cable_pair"])


def test_recording_reader_keeps_file_order(tmp_path: Path) -> None:
    """read_recording returns the events in the order of the file (sorting is replay's job)."""
    events = _cable_cut()[::-1]
    rec = _write(tmp_path / "events.jsonl", events)
    assert read_recording(rec).events == events


async def test_maintenance_windows_and_their_end_on_the_virtual_clock(tmp_path: Path) -> None:
    """A config window over sw1-north from T0+0 to T0+60 s (long past by the wall
    clock): a link-down inside it is suppressed; when the virtual clock passes the
    window's end (the next event is at T0+120 s) the held fact is re-evaluated and
    logged with the live runner's id, at the window's end."""
    window = {
        "id": "sw1-work",
        "scope": "device",
        "target": "sw1-north",
        "start": T0.isoformat(),
        "end": (T0 + timedelta(seconds=60)).isoformat(),
    }
    config = _config(tmp_path).model_copy(
        update={
            "maintenance": Config.model_validate({"maintenance": {"windows": [window]}}).maintenance
        }
    )
    down = _event("link_down", SW1, 10.0)
    later = _event("link_down", SW2, 120.0)
    result = await replay_events([down, later], config)
    assert _kinds(result) == [
        ("link_down", "sw1-north|GigabitEthernet1/0/3", "suppressed"),
        ("link_down", "sw1-north|GigabitEthernet1/0/3", "logged"),
        ("link_down", "sw2-north|GigabitEthernet1/0/3", "logged"),
    ]
    after = result.outcomes[1]
    assert after.outcome_id == outcome_id_for("link_down", f"{down.id}/after/sw1-work")
    assert after.trace["reevaluated_after"] == "sw1-work"
    ended = T0 + timedelta(seconds=60)
    assert ended < after.recorded_at < ended + timedelta(seconds=1)


async def test_progress_is_reported_every_few_wall_seconds(tmp_path: Path) -> None:
    """A slow replay (the injected wall clock moves 1 s per event) reports progress about
    every ``progress_interval`` seconds, and once at the end."""
    events = [_event("link_down", SW1 if i % 2 else SW2, float(i)) for i in range(10)]
    now = [0.0]

    def wall() -> float:
        now[0] += 0.5  # every look at the wall clock: half a second later
        return now[0]

    seen: list[tuple[int, int]] = []
    await replay_events(
        events,
        _config(tmp_path),
        progress=lambda done, total: seen.append((done, total)),
        progress_interval=3.0,
        wall=wall,
    )
    assert seen[-1] == (10, 10)
    assert 2 <= len(seen) < 10
    assert all(total == 10 for _, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


async def test_store_keeps_outcomes_older_than_the_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--store``: the replay's own SQLite file never prunes by wall-clock time — a
    recording older than ``store.retention_days`` (T0 is months ago) keeps every
    outcome, however long the replay runs."""
    import asyncio

    from netcortex.contracts.memory import OutcomeQuery
    from netcortex.memory.episodic import sqlite

    original = sqlite.SqliteOutcomeStore.__init__

    def prune_often(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["retention_interval"] = 0.01  # a retention loop, if any, runs at once
        original(self, *args, **kwargs)

    monkeypatch.setattr(sqlite.SqliteOutcomeStore, "__init__", prune_often)

    async def pause(seconds: float) -> None:
        await asyncio.sleep(0.1)  # the store commits, then a retention loop could prune

    kept = tmp_path / "replay.db"
    result = await replay_events(
        _cable_cut(), _config(tmp_path), speed=1000.0, store=kept, sleep=pause
    )
    assert len(result.outcomes) == 4
    store = sqlite.SqliteOutcomeStore(
        _config(tmp_path).store.model_copy(update={"sqlite_path": kept, "retention_days": 0})
    )
    await store.start()
    try:
        assert len(await store.query(OutcomeQuery(limit=100))) == 4
    finally:
        await store.close()
