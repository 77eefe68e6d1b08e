"""``EventRecorder`` and the recording format (``netcortex run --record``, issue 8 item 5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netcortex.bridge.record import EventRecorder, encode_line, parse_lines, read_recording
from netcortex.config import BusConfig
from netcortex.contracts.codec import encode_event
from netcortex.contracts.events import EVENT_CLASSES, SensoryEvent
from netcortex.metrics import Registry
from netcortex.testing import make_event
from netcortex.thalamus.memory import InMemoryEventBus

# -- the format: any valid event survives encode → line → reader -----------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=8,
)
_moment = st.builds(
    lambda base, minutes: base.astimezone(timezone(timedelta(minutes=minutes))),
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    ),
    st.integers(-12 * 60, 14 * 60),
)
_optional = st.none() | _text
events_strategy = st.builds(
    SensoryEvent,
    id=_text.filter(bool),
    subject=_text,
    event_class=st.sampled_from(sorted(EVENT_CLASSES)),
    source=_text,
    target=_text,
    device=_optional,
    interface=_optional,
    peer=_optional,
    agent=_optional,
    observed_at=_moment,
    received_at=_moment,
    payload=st.dictionaries(_text, _json, max_size=4),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(events_strategy, max_size=6))
def test_any_events_survive_the_recording_format(
    tmp_path: Path, events: list[SensoryEvent]
) -> None:
    """Any list of valid events, encoded as recording lines, reads back equal."""
    path = tmp_path / "prop.jsonl"
    path.write_bytes(b"".join(encode_line(e) for e in events))
    got = read_recording(path)
    assert got.bad == []
    assert got.events == events
    assert [g.received_at for g in got.events] == [e.received_at for e in events]


def test_bad_lines_are_numbered_never_raised() -> None:
    """Lines that are not events are reported by number; blank lines are skipped."""
    good = encode_line(make_event("link_down", interface="Gi1/0/3"))
    got = parse_lines([good, b"", b"{", b"[]", b'{"schema_version": 1}', good])
    assert len(got.events) == 2
    assert [b.line for b in got.bad] == [3, 4, 5]
    assert "invalid JSON" in got.bad[0].error


# -- the recorder on a real in-memory bus ----------------------------------------------


async def test_recorder_appends_every_sensory_event(tmp_path: Path) -> None:
    """Every event on sensory.> is written, in order; other subjects are not, non-events are counted
    invalid."""
    path = tmp_path / "sub" / "events.jsonl"
    metrics = Registry()
    async with InMemoryEventBus(BusConfig()) as bus:
        recorder = EventRecorder(bus, path, metrics=metrics, flush_interval=0.01)
        await recorder.start()
        events = [make_event("link_down", device=f"r{i}", interface="Gi1/0/1") for i in range(20)]
        for event in events:
            await bus.publish(event.subject, encode_event(event), msg_id=event.id)
        await bus.publish("reflex.link_down.logged.r1", b"{}")  # not a sensory subject
        await bus.publish("sensory.snmp.trap.other.x", b"not an event")
        await recorder.stop()
        await recorder.stop()  # idempotent
    got = read_recording(path)
    assert got.events == events
    assert (recorder.written, recorder.invalid, recorder.dropped) == (20, 1, 0)
    counter: Any = metrics.get("netcortex_recorder_events_total")
    assert counter.value(result="written") == 20
    assert counter.value(result="invalid") == 1


async def test_recorder_appends_to_an_existing_file(tmp_path: Path) -> None:
    """An existing recording is appended to, never truncated."""
    path = tmp_path / "events.jsonl"
    first = make_event("link_up", interface="Gi1/0/2")
    path.write_bytes(encode_line(first))
    second = make_event("link_down", interface="Gi1/0/2")
    async with InMemoryEventBus(BusConfig()) as bus, EventRecorder(bus, path):
        await bus.publish(second.subject, encode_event(second), msg_id=second.id)
    assert read_recording(path).events == [first, second]


async def test_a_full_queue_drops_and_counts_never_waits(tmp_path: Path) -> None:
    """Intake never waits for the writer: beyond ``queue_size`` events are dropped
    and counted (``_take`` is what the reader task calls for every message)."""
    path = tmp_path / "events.jsonl"
    metrics = Registry()
    events = [make_event("link_down", device=f"r{i}", interface="Gi1/0/1") for i in range(5)]
    async with InMemoryEventBus(BusConfig()) as bus:
        recorder = EventRecorder(bus, path, metrics=metrics, queue_size=2)
        await recorder.start()
        for event in events:  # no await in between: the writer cannot drain meanwhile
            recorder._take(SimpleNamespace(data=encode_event(event)))
        assert recorder.dropped == 3
        await recorder.stop()
    assert read_recording(path).events == events[:2]
    counter: Any = metrics.get("netcortex_recorder_events_total")
    assert counter.value(result="dropped") == 3


async def test_stop_without_start_and_no_restart(tmp_path: Path) -> None:
    """stop without start writes nothing; a stopped recorder cannot start again."""
    async with InMemoryEventBus(BusConfig()) as bus:
        recorder = EventRecorder(bus, tmp_path / "x.jsonl")
        await recorder.stop()
        assert not (tmp_path / "x.jsonl").exists()
        with pytest.raises(RuntimeError, match="restarted"):
            await recorder.start()


async def test_engine_records_with_record_option(tmp_path: Path) -> None:
    """``Engine(config, record=PATH)``: what its bus carries on ``sensory.>`` is recorded."""
    from netcortex.app import Engine
    from netcortex.config import Config

    config = Config.model_validate(
        {
            "store": {"sqlite_path": str(tmp_path / "outcomes.db")},
            "trap": {"enabled": False},
            "http": {"enabled": False},
            "association": {"enabled": False},
        }
    )
    path = tmp_path / "events.jsonl"
    event = make_event("link_down", interface="Gi1/0/9")
    async with Engine(config, record=path) as engine:
        assert engine.recorder is not None
        await engine.bus.publish(event.subject, encode_event(event), msg_id=event.id)
    assert read_recording(path).events == [event]


def test_public_surface() -> None:
    """bridge.record and bridge.replay export exactly their documented names."""
    import netcortex.bridge.record as record
    import netcortex.bridge.replay as replay

    assert sorted(record.__all__) == [
        "BadLine",
        "EventRecorder",
        "RECORD_PATTERN",
        "Recording",
        "encode_line",
        "parse_lines",
        "read_recording",
    ]
    assert sorted(replay.__all__) == [
        "ReplayResult",
        "VirtualClock",
        "add_replay_parser",
        "replay_events",
        "replay_file",
        "sort_events",
    ]
    for module in (record, replay):
        assert all(hasattr(module, name) for name in module.__all__)


# -- review fixes: torn files, stop under load, hostile lines ---------------------------


async def test_appending_after_a_torn_last_line_keeps_the_new_events(tmp_path: Path) -> None:
    """A recording cut off mid-line (crash, full disk) is ended before appending: the
    torn line is one bad line, the new event is read back."""
    path = tmp_path / "events.jsonl"
    first = make_event("link_up", interface="Gi1/0/2")
    path.write_bytes(encode_line(first) + encode_line(first)[:40])  # no newline at the end
    second = make_event("link_down", interface="Gi1/0/2")
    async with InMemoryEventBus(BusConfig()) as bus, EventRecorder(bus, path):
        await bus.publish(second.subject, encode_event(second), msg_id=second.id)
    got = read_recording(path)
    assert got.events == [first, second]
    assert [b.line for b in got.bad] == [2]


async def test_stop_writes_what_the_subscription_holds_even_past_the_queue(
    tmp_path: Path,
) -> None:
    """Events published just before stop are all written although they exceed the queue:
    at stop intake is over, so the recorder waits for the writer instead of dropping."""
    path = tmp_path / "events.jsonl"
    events = [make_event("link_down", device=f"r{i}", interface="Gi1/0/1") for i in range(30)]
    async with InMemoryEventBus(BusConfig()) as bus:
        recorder = EventRecorder(bus, path, queue_size=2, batch_size=1)
        await recorder.start()
        for event in events:
            await bus.publish(event.subject, encode_event(event), msg_id=event.id)  # no yield
        await recorder.stop()
    assert recorder.dropped == 0
    assert read_recording(path).events == events


def test_lines_replay_could_not_use_are_bad_never_raised() -> None:
    """Deeply nested JSON and fields of the wrong type (replay sorts on ``id`` and
    matches ``subject``) are bad lines, not a crash later."""
    good = make_event("link_down", interface="Gi1/0/3")
    obj = json.loads(encode_line(good))
    lines = [b"[" * 100_000, encode_line(good)]
    for name, value in (("id", 5), ("subject", ["x"]), ("device", 7)):
        lines.append(json.dumps({**obj, name: value}).encode())
    got = parse_lines(lines)
    assert got.events == [good]
    assert [b.line for b in got.bad] == [1, 3, 4, 5]
    assert "nested too deeply" in got.bad[0].error
    assert "id must be a string" in got.bad[1].error


def test_a_huge_line_is_skipped_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line longer than ``MAX_LINE`` is one bad line (read in chunks, never whole);
    the lines after it are read as usual."""
    import netcortex.bridge.record as record

    monkeypatch.setattr(record, "MAX_LINE", 1000)
    first, last = make_event("link_up", interface="Gi1/0/1"), make_event("link_down")
    big = make_event("link_down", payload={"blob": "x" * 5000})
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        encode_line(first) + encode_line(big) + b"y" * 3000 + b"\n" + encode_line(last)
    )
    got = read_recording(path)
    assert got.events == [first, last]
    assert [(b.line, b.error) for b in got.bad] == [
        (2, "line longer than 1000 bytes"),
        (3, "line longer than 1000 bytes"),
    ]


class _FailOnce:
    """A recording file whose first write stops half-way with ENOSPC (a full disk)."""

    def __init__(self, inner: Any) -> None:
        import asyncio

        self.inner = inner
        self.calls = 0
        self.failed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def writelines(self, lines: list[bytes]) -> None:
        self.calls += 1
        data = b"".join(lines)
        if self.calls == 1:
            self.inner.write(data[: len(data) // 2])
            self.inner.flush()
            self._loop.call_soon_threadsafe(self.failed.set)  # called from the writer thread
            raise OSError(28, "No space left on device")
        self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


async def test_a_failed_write_does_not_swallow_the_next_event(tmp_path: Path) -> None:
    """A write cut off half-way (disk full) leaves a torn line; the next batch starts on
    a line of its own, so its event is read back (the torn one is one bad line)."""
    import asyncio

    path = tmp_path / "events.jsonl"
    first, second = make_event("link_down"), make_event("link_up")
    async with InMemoryEventBus(BusConfig()) as bus:
        recorder = EventRecorder(bus, path, flush_interval=0.01)
        await recorder.start()
        flaky = _FailOnce(recorder._file)
        recorder._file = flaky  # type: ignore[assignment]
        await bus.publish(first.subject, encode_event(first), msg_id=first.id)
        async with asyncio.timeout(5):
            await flaky.failed.wait()
        await bus.publish(second.subject, encode_event(second), msg_id=second.id)
        await recorder.stop()
    got = read_recording(path)
    assert got.events == [second]
    assert [b.line for b in got.bad] == [1]
