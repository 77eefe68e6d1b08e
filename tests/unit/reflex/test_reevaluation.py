"""Unit tests: a fact suppressed by a maintenance window gets its normal outcome when
the window ends — unless it recovered meanwhile. Real bus, runner, FileInventory on
the shared NetBox fixture and SqliteMaintenanceCalendar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from netcortex.contracts.codec import encode_event
from netcortex.contracts.events import SensoryEvent
from netcortex.contracts.memory import MaintenanceWindow
from netcortex.contracts.reflex import OutcomeKind
from netcortex.memory.semantic import FileInventory
from netcortex.memory.semantic.maintenance import SqliteMaintenanceCalendar
from netcortex.reflex.gates import EnrichGate, MaintenanceGate
from netcortex.reflex.handlers import LinkDownHandler, LinkUpHandler
from netcortex.reflex.pipeline import Pipeline
from netcortex.reflex.registry import HandlerRegistry
from netcortex.reflex.runner import ReflexRunner
from netcortex.testing import RecordingSink, make_event
from netcortex.thalamus.memory import InMemoryEventBus
from tests.conftest import shared_fixture

SW1 = "192.0.2.11"


@pytest.fixture
async def inventory() -> AsyncIterator[FileInventory]:
    """The shared NetBox fixture inventory, loaded."""
    inv = FileInventory(shared_fixture("netbox", "inventory.json"))
    await inv.start()
    yield inv
    await inv.close()


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


def _bus() -> InMemoryEventBus:
    from netcortex.config import BusConfig

    return InMemoryEventBus(BusConfig())
