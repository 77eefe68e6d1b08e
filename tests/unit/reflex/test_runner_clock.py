"""Unit tests for the runner's injectable clock and ``run_event`` (``netcortex replay``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from netcortex.config import BusConfig
from netcortex.reflex.handlers import LinkDownHandler, LinkUpHandler
from netcortex.reflex.pipeline import Pipeline
from netcortex.reflex.registry import HandlerRegistry
from netcortex.reflex.runner import ReflexRunner
from netcortex.testing import RecordingSink, make_event
from netcortex.thalamus.memory import InMemoryEventBus

VIRTUAL = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _runner(rec: RecordingSink, clock: object = None) -> ReflexRunner:
    registry = HandlerRegistry([LinkDownHandler(), LinkUpHandler()])
    bus = InMemoryEventBus(BusConfig())  # never started: run_event does not use the bus
    return ReflexRunner(registry, bus, Pipeline(sinks=(rec,)), clock=clock)  # type: ignore[arg-type]


class TestRunEvent:
    async def test_only_matching_handlers_run_without_the_bus(self) -> None:
        """run_event hands the event to the handlers whose patterns match, through the sinks."""
        rec = RecordingSink()
        runner = _runner(rec)
        down = make_event("link_down", interface="Gi1/0/1")
        assert await runner.run_event(down) == 1
        assert await runner.run_event(make_event("device_reboot")) == 0
        assert [(o.handler_id, o.event_id) for o in rec.outcomes] == [("link_down", down.id)]

    async def test_an_injected_clock_stamps_recorded_at(self) -> None:
        """With clock= every outcome's recorded_at is that clock's now (replay's virtual time)."""
        rec = RecordingSink()
        runner = _runner(rec, clock=lambda: VIRTUAL)
        await runner.run_event(make_event("link_up", interface="Gi1/0/1"))
        assert [o.recorded_at for o in rec.outcomes] == [VIRTUAL]

    async def test_the_default_clock_is_the_wall_clock(self) -> None:
        """Without clock= recorded_at stays when the outcome was built (now, by the wall)."""
        rec = RecordingSink()
        before = datetime.now(UTC)
        await _runner(rec).run_event(make_event("link_up", interface="Gi1/0/1"))
        (outcome,) = rec.outcomes
        assert before <= outcome.recorded_at <= datetime.now(UTC) + timedelta(seconds=1)

    async def test_nothing_held_without_a_calendar(self) -> None:
        """Without a maintenance calendar there is no window change and nothing to release."""
        rec = RecordingSink()
        runner = _runner(rec, clock=lambda: VIRTUAL)
        assert runner.next_window_change() is None
        await runner.release_held()
        assert rec.outcomes == []
