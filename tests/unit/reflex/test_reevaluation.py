"""Unit tests: a fact suppressed by a maintenance window gets its normal outcome when
the window ends — unless it recovered meanwhile. Real bus, runner, FileInventory on
the shared NetBox fixture and SqliteMaintenanceCalendar."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from netcortex.contracts.codec import encode_event
from netcortex.contracts.events import SensoryEvent
from netcortex.contracts.memory import MaintenanceWindow
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.memory.episodic.dedup_memory import InMemoryDedupStore
from netcortex.memory.semantic import FileInventory
from netcortex.memory.semantic.maintenance import SqliteMaintenanceCalendar
from netcortex.reflex.gates import DedupGate, EnrichGate, MaintenanceGate
from netcortex.reflex.handlers import LinkDownHandler, LinkUpHandler
from netcortex.reflex.pipeline import Pipeline
from netcortex.reflex.registry import HandlerRegistry
from netcortex.reflex.runner import ReflexRunner
from netcortex.testing import RecordingSink, make_event
from netcortex.thalamus.memory import InMemoryEventBus

SW1 = "192.0.2.11"


def link_event(event_class: str) -> SensoryEvent:
    """A link event from sw1-north's address about ifIndex 3 (GigabitEthernet1/0/3)."""
    return make_event(
        event_class,
        device=SW1,
        interface="ifIndex=3",
        agent=SW1,
        payload={"if_index": 3},
    )


async def short_window(tmp_path: Path, seconds: int = 2) -> SqliteMaintenanceCalendar:
    """A calendar with one window on sw1-north that ends ``seconds`` from now."""
    now = datetime.now(UTC).replace(microsecond=0)
    cal = SqliteMaintenanceCalendar(tmp_path / "maintenance.db")
    await cal.start()
    await cal.add(
        MaintenanceWindow(
            id="mw-short",
            scope="device",
            target="sw1-north",
            start=now - timedelta(minutes=5),
            end=now + timedelta(seconds=seconds),
        )
    )
    return cal


async def test_fact_still_down_gets_its_outcome_when_the_window_ends(
    tmp_path: Path, inventory: FileInventory
) -> None:
    """A link down suppressed in a window is logged (high, own outcome id) once it ends."""
    cal = await short_window(tmp_path)
    rec = RecordingSink()
    async with _bus() as bus:
        pipeline = Pipeline(
            gates=(EnrichGate(inventory), MaintenanceGate(cal)), sinks=(rec,), calendar=cal
        )
        runner = ReflexRunner(HandlerRegistry([LinkDownHandler()]), bus, pipeline)
        await runner.start()
        try:
            down = link_event("link_down")
            with capture_logs() as logs:
                await bus.publish(down.subject, encode_event(down), msg_id=down.id)
                first, later = await rec.wait_for(2, timeout=15)
        finally:
            await runner.stop()
    await cal.close()
    assert first.kind is OutcomeKind.SUPPRESSED
    assert first.trace["window_id"] == "mw-short"
    assert later.kind is OutcomeKind.LOGGED
    assert later.severity.value == "high"
    assert later.target == "sw1-north|GigabitEthernet1/0/3"
    assert later.event_id == down.id
    assert later.outcome_id != first.outcome_id
    assert later.trace["decided_by"] == "maintenance_end"
    assert later.trace["reevaluated_after"] == "mw-short"
    assert any(e["event"] == "fact_reevaluated" for e in logs)


async def test_recovered_fact_gets_no_outcome_after_the_window(
    tmp_path: Path, inventory: FileInventory
) -> None:
    """A link that came back up inside the window produces nothing when the window ends."""
    cal = await short_window(tmp_path)
    rec = RecordingSink()
    async with _bus() as bus:
        pipeline = Pipeline(
            gates=(EnrichGate(inventory), MaintenanceGate(cal)), sinks=(rec,), calendar=cal
        )
        handlers = HandlerRegistry([LinkDownHandler(), LinkUpHandler()])
        runner = ReflexRunner(handlers, bus, pipeline)
        await runner.start()
        try:
            down, up = link_event("link_down"), link_event("link_up")
            for ev in (down, up):
                await bus.publish(ev.subject, encode_event(ev), msg_id=ev.id)
            await rec.wait_for(2, timeout=10)  # both suppressed
            # After the window: a marker event proves the watcher ran past its end,
            # and only the marker's outcome follows (the recovered fact stays quiet).
            await runner._reevaluate(cal)
            marker = make_event("link_down", device="r9", interface="Gi9", agent="192.0.2.99")
            await bus.publish(marker.subject, encode_event(marker), msg_id=marker.id)
            outcomes = await rec.wait_for(3, timeout=10)
        finally:
            await runner.stop()
    await cal.close()
    assert [o.kind for o in outcomes[:2]] == [OutcomeKind.SUPPRESSED] * 2
    assert outcomes[2].event_id == marker.id
    assert len(rec.outcomes) == 3


async def long_window(tmp_path: Path, window_id: str = "mw-long") -> SqliteMaintenanceCalendar:
    """A calendar with one window (``window_id``) on sw1-north that lasts another hour
    (removed by the test)."""
    now = datetime.now(UTC).replace(microsecond=0)
    cal = SqliteMaintenanceCalendar(tmp_path / "maintenance.db", reload_interval=0)
    await cal.start()
    await cal.add(
        MaintenanceWindow(
            id=window_id,
            scope="device",
            target="sw1-north",
            start=now - timedelta(minutes=5),
            end=now + timedelta(hours=1),
        )
    )
    return cal


async def _publish(bus: InMemoryEventBus, event: SensoryEvent) -> None:
    await bus.publish(event.subject, encode_event(event), msg_id=event.id)


async def test_storm_in_window_then_live_repeat_gives_one_logged_outcome(
    tmp_path: Path, inventory: FileInventory
) -> None:
    """Many downs in a window give one re-evaluated logged outcome; a repeat after it is
    skipped by dedup (the re-evaluated fact set the dedup key)."""
    cal = await long_window(tmp_path)
    rec = RecordingSink()
    gates = (EnrichGate(inventory), MaintenanceGate(cal), DedupGate(InMemoryDedupStore()))
    async with _bus() as bus:
        runner = ReflexRunner(
            HandlerRegistry([LinkDownHandler()]),
            bus,
            Pipeline(gates=gates, sinks=(rec,), calendar=cal),
        )
        await runner.start()
        try:
            storm = [link_event("link_down") for _ in range(5)]
            for ev in storm:
                await _publish(bus, ev)
            await rec.wait_for(5, timeout=10)
            assert await cal.remove("mw-long")
            await runner._reevaluate(cal)
            await rec.wait_for(6, timeout=10)
            repeat = link_event("link_down")
            await _publish(bus, repeat)
            outcomes = await rec.wait_for(7, timeout=10)
        finally:
            await runner.stop()
    await cal.close()
    assert [o.kind for o in outcomes[:5]] == [OutcomeKind.SUPPRESSED] * 5
    after, live = outcomes[5], outcomes[6]
    assert (after.kind, after.event_id) == (OutcomeKind.LOGGED, storm[-1].id)
    assert after.trace["decided_by"] == "maintenance_end"
    assert after.trace["corroboration"] == 1
    assert (live.kind, live.event_id) == (OutcomeKind.SKIPPED, repeat.id)
    assert live.trace["first_event_id"] == storm[-1].id
    assert live.trace["corroboration"] == 2


async def test_fact_logged_live_after_the_window_is_skipped_when_reevaluated(
    tmp_path: Path, inventory: FileInventory
) -> None:
    """A down logged by a live event between the window's end and the re-evaluation is not
    logged a second time: the re-evaluated fact is skipped, counting corroboration."""
    cal = await long_window(tmp_path)
    rec = RecordingSink()
    gates = (EnrichGate(inventory), MaintenanceGate(cal), DedupGate(InMemoryDedupStore()))
    async with _bus() as bus:
        runner = ReflexRunner(
            HandlerRegistry([LinkDownHandler()]),
            bus,
            Pipeline(gates=gates, sinks=(rec,), calendar=cal),
        )
        await runner.start()
        try:
            held = link_event("link_down")
            await _publish(bus, held)
            await rec.wait_for(1, timeout=10)
            assert await cal.remove("mw-long")
            live = link_event("link_down")
            await _publish(bus, live)
            await rec.wait_for(2, timeout=10)
            await runner._reevaluate(cal)
            outcomes = await rec.wait_for(3, timeout=10)
        finally:
            await runner.stop()
    await cal.close()
    kinds = [o.kind for o in outcomes]
    assert kinds == [OutcomeKind.SUPPRESSED, OutcomeKind.LOGGED, OutcomeKind.SKIPPED]
    again = outcomes[2]
    assert again.event_id == held.id
    assert again.trace["decided_by"] == "dedup"
    assert again.trace["reevaluated_after"] == "mw-long"
    assert again.trace["first_event_id"] == live.id
    assert again.trace["corroboration"] == 2


class _FlakyCalendar:
    """The real calendar, except that ``next_change`` raises the first ``failures`` times."""

    def __init__(self, inner: SqliteMaintenanceCalendar, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def next_change(self, after: datetime) -> datetime | None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("calendar broke")
        return self.inner.next_change(after)


async def test_window_watcher_logs_a_failure_and_keeps_going(
    tmp_path: Path, inventory: FileInventory
) -> None:
    """A calendar error in the window watcher is logged and the watcher lives on: the held
    fact still gets its outcome when the window ends."""
    real = await short_window(tmp_path)
    cal: Any = _FlakyCalendar(real, failures=1)
    rec = RecordingSink()
    async with _bus() as bus:
        pipeline = Pipeline(
            gates=(EnrichGate(inventory), MaintenanceGate(cal)), sinks=(rec,), calendar=cal
        )
        runner = ReflexRunner(HandlerRegistry([LinkDownHandler()]), bus, pipeline)
        with capture_logs() as logs:
            await runner.start()
            try:
                await _publish(bus, link_event("link_down"))
                first, later = await rec.wait_for(2, timeout=15)
            finally:
                await runner.stop()
    await real.close()
    assert first.kind is OutcomeKind.SUPPRESSED
    assert later.kind is OutcomeKind.LOGGED
    failed = [e for e in logs if e["event"] == "window_watch_failed"]
    assert len(failed) == 1
    assert failed[0]["stage"] == "next_change"


class _StoppingSink:
    """Calls ``runner.stop()`` from inside the first re-evaluated emit and records whether
    that emit was cancelled and whether ``flush`` came before it finished."""

    name = "stopping"

    def __init__(self) -> None:
        self.runner: ReflexRunner | None = None
        self.stop_task: asyncio.Task[None] | None = None
        self.events: list[str] = []

    async def emit(self, outcome: ReflexOutcome) -> None:
        if "reevaluated_after" not in outcome.trace or self.runner is None:
            return
        self.events.append("emit")
        self.stop_task = asyncio.create_task(self.runner.stop())
        try:
            for _ in range(10):  # give stop() every chance to cut this emit off
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.events.append("cancelled")
            raise
        self.events.append("emitted")

    async def flush(self) -> None:
        self.events.append("flush")


async def test_stop_lets_a_reevaluation_in_progress_finish_before_flushing(
    tmp_path: Path, inventory: FileInventory
) -> None:
    """stop() during a re-evaluation neither cuts the outcome off mid-sinks nor flushes
    the sinks before it: every sink sees it, then the flush."""
    cal = await short_window(tmp_path)
    stopping, rec = _StoppingSink(), RecordingSink()
    async with _bus() as bus:
        pipeline = Pipeline(
            gates=(EnrichGate(inventory), MaintenanceGate(cal)),
            sinks=(stopping, rec),
            calendar=cal,
        )
        runner = ReflexRunner(HandlerRegistry([LinkDownHandler()]), bus, pipeline)
        stopping.runner = runner
        await runner.start()
        try:
            await _publish(bus, link_event("link_down"))
            # the window ends within 2 s; the watcher re-evaluates and the sink stops it
            await rec.wait_for(2, timeout=15)
            assert stopping.stop_task is not None
            await stopping.stop_task
        finally:
            await runner.stop()
    await cal.close()
    # The first event's (suppressed) outcome was acked after a flush of its own;
    # from the re-evaluation on: every sink, then the stop's flush, nothing cut off.
    events = stopping.events
    assert "emit" in events
    assert events[events.index("emit") :] == ["emit", "emitted", "flush"]
    assert rec.outcomes[1].kind is OutcomeKind.LOGGED


def _bus() -> InMemoryEventBus:
    from netcortex.config import BusConfig

    return InMemoryEventBus(BusConfig())
