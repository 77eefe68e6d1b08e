"""``PollReceiver`` rides out a nats-server restart through ``sensory._publish``.

The poller's reports publish like the trap receiver's (``publish_event`` with the
receiver's ``BusOutage``, ``tests/unit/sensory/test_publish_outage.py``): a real
``NatsEventBus`` on a private ``nats-server`` (file store, so the restarted server
has the same streams) that the test stops before the poller's event exists and
starts again. The event is a ``device_down`` of a target that never answers
(``failure_threshold`` 1: its first poll), so it is made while the bus is gone, or
a ``link_down`` of a ``ScriptedSnmpAgent`` interface set down during the outage.
An outage longer than ``outage_buffer_seconds`` defers the report: the change is
published by the first poll after the bus is back. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from netcortex.config import PollConfig, PollTargetConfig
from netcortex.contracts.codec import decode_event
from netcortex.metrics import Registry
from netcortex.sensory.poll.diff import IF_STATUS_DOWN, IF_STATUS_UP
from netcortex.sensory.poll.scheduler import PollReceiver
from netcortex.thalamus.nats import NatsEventBus
from tests.servers import NatsServer, ScriptedSnmpAgent
from tests.unit.sensory.poll.test_scheduler import eventually, failures, poll_config, polls, stored
from tests.unit.sensory.test_publish_outage import (
    WITHIN,
    _drain,
    _total,
    fail_fast_bus,
    restartable_nats,
)

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.xdist_group("nats-restart")]

PUBLISHED = "netcortex_poll_published_total"
FAILED = "netcortex_poll_publish_failed_total"
DEFERRED = "netcortex_poll_reports_deferred_total"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A private nats-server (store under ``tmp_path/nats``) this test restarts."""
    async with restartable_nats(tmp_path / "nats") as srv:
        yield srv


@pytest.fixture
async def bus(server: NatsServer) -> AsyncIterator[NatsEventBus]:
    """A started bus on ``server`` whose publishes fail fast while it is gone."""
    async with fail_fast_bus(server) as nats_bus:
        yield nats_bus


@pytest.fixture
def dead_target() -> Iterator[PollTargetConfig]:
    """A target whose port is bound (no ICMP) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        yield PollTargetConfig(device="dead-agent", host="127.0.0.1", port=hole.getsockname()[1])


def down_on_first_poll(tmp_path: Path, target: PollTargetConfig) -> PollConfig:
    """``target`` polled at once, ``device_down`` after its first failed poll."""
    return poll_config(tmp_path, target, failure_threshold=1, timeout_seconds=0.2)


async def test_event_made_during_a_restart_is_published_once(
    tmp_path: Path, server: NatsServer, bus: NatsEventBus, dead_target: PollTargetConfig
) -> None:
    """A ``device_down`` made while nats-server is down is retried until it is back,
    then stored exactly once and counted published once, with no failure counted."""
    registry = Registry()
    await (await bus.subscribe("sensory.>", durable="poll-check")).close()  # from the start
    await asyncio.to_thread(server.stop)
    rx = PollReceiver(down_on_first_poll(tmp_path, dead_target), bus, registry)
    with capture_logs() as logs:
        try:
            await rx.start()
            # ridden out, not given up: retried past the first attempts
            await eventually(
                lambda: any(e["event"] == "poll_publish_retry" and e["attempt"] >= 3 for e in logs),
                within=WITHIN,
            )
            assert _total(registry, PUBLISHED) == 0
            await asyncio.to_thread(server.start)
            await eventually(lambda: _total(registry, PUBLISHED) == 1, within=WITHIN)
        finally:
            await rx.close()
    assert _total(registry, PUBLISHED, event_class="device_down") == 1
    assert _total(registry, FAILED) == 0
    (retried,) = {e["event_id"] for e in logs if e["event"] == "poll_publish_retry"}
    assert await _drain(bus, "poll-check", 1) == [retried]
    assert "poll_bus_recovered" in [e["event"] for e in logs]


async def test_event_outlasting_the_outage_budget_is_counted(
    tmp_path: Path, server: NatsServer, bus: NatsEventBus, dead_target: PollTargetConfig
) -> None:
    """With nats-server gone longer than ``outage_buffer_seconds`` the poller's event is
    given up: counted ``publish_failed{error="bus_outage"}`` and logged, not published."""
    registry = Registry()
    await asyncio.to_thread(server.stop)
    rx = PollReceiver(
        down_on_first_poll(tmp_path, dead_target), bus, registry, outage_buffer_seconds=1.0
    )
    with capture_logs() as logs:
        try:
            await rx.start()
            await eventually(lambda: _total(registry, FAILED) == 1, within=WITHIN)
        finally:
            await rx.close()
    assert _total(registry, FAILED, error="bus_outage") == 1
    assert _total(registry, PUBLISHED) == 0
    (failed,) = [e for e in logs if e["event"] == "poll_publish_failed"]
    assert failed["error"] == "bus_outage"
    assert "device_down" in failed["subject"]


async def _stream(bus: NatsEventBus, durable: str) -> list[tuple[str, str]]:
    """``(event id, event class)`` on the durable ``sensory.>`` consumer (until 0.5 s
    of quiet)."""
    sub = await bus.subscribe("sensory.>", durable=durable)
    out: list[tuple[str, str]] = []
    try:
        async with asyncio.timeout(WITHIN):
            while True:
                try:
                    msg = await sub.next(timeout=0.5)
                except TimeoutError:
                    return out
                event = decode_event(msg.data)
                out.append((event.id, event.event_class))
                await msg.ack()
    finally:
        await sub.close()


def _assert_reported_once(
    stream: list[tuple[str, str]], logs: list[MutableMapping[str, Any]], event_class: str
) -> None:
    """The stream has ``event_class`` only, and exactly one event the receiver did not
    give up: the re-report. A given-up one may have landed too (nats-py sends what it
    buffered while disconnected once it is back): at least once, never lost."""
    given_up = {e["event_id"] for e in logs if e["event"] == "poll_publish_failed"}
    assert given_up
    assert {cls for _, cls in stream} == {event_class}
    assert len([i for i, _ in stream if i not in given_up]) == 1


def _deferred(logs: list[MutableMapping[str, Any]], event_class: str) -> bool:
    """Whether a ``poll_report_deferred`` line names ``event_class``."""
    return any(
        e["event"] == "poll_report_deferred" and event_class in str(e["event_classes"])
        for e in logs
    )


async def test_link_down_lost_to_an_outage_is_reported_when_the_bus_is_back(
    tmp_path: Path, server: NatsServer, bus: NatsEventBus, agent: ScriptedSnmpAgent
) -> None:
    """A ``link_down`` given up to an outage longer than the budget (counted
    ``bus_outage``) leaves the stored snapshot as it was; the first poll after the bus
    is back publishes ``link_down`` exactly once, and only then is the link stored down."""
    registry = Registry()
    await (await bus.subscribe("sensory.>", durable="poll-check")).close()  # from the start
    config = poll_config(
        tmp_path, PollTargetConfig(device="lab-agent", host=agent.host, port=agent.port)
    )
    rx = PollReceiver(config, bus, registry, outage_buffer_seconds=1.0)
    with capture_logs() as logs:
        try:
            await rx.start()
            await eventually(lambda: polls(registry) >= 1, within=WITHIN)  # the baseline
            await asyncio.to_thread(server.stop)
            agent.set_interface(3, oper=IF_STATUS_DOWN)
            await eventually(lambda: _deferred(logs, "link_down"), within=WITHIN)
            assert _total(registry, FAILED, error="bus_outage") >= 1
            assert _total(registry, DEFERRED) >= 1
            snapshots, _ = await stored(config.state_path)
            assert snapshots["lab-agent"].interfaces[3].oper_status == IF_STATUS_UP
            assert _total(registry, PUBLISHED) == 0
            await asyncio.to_thread(server.start)
            await eventually(
                lambda: _total(registry, PUBLISHED, event_class="link_down") == 1, within=WITHIN
            )
            seen = polls(registry)
            await eventually(lambda: polls(registry) >= seen + 2, within=WITHIN)
        finally:
            await rx.close()
    assert _total(registry, PUBLISHED) == 1  # once, not again by the polls after it
    snapshots, _ = await stored(config.state_path)
    assert snapshots["lab-agent"].interfaces[3].oper_status == IF_STATUS_DOWN
    _assert_reported_once(await _stream(bus, "poll-check"), logs, "link_down")


async def test_device_down_lost_to_an_outage_is_reported_when_the_bus_is_back(
    tmp_path: Path, server: NatsServer, bus: NatsEventBus, dead_target: PollTargetConfig
) -> None:
    """A ``device_down`` given up to an outage longer than the budget is taken back
    (the down flag is not stored); the first failed poll after the bus is back
    publishes it exactly once, and only then is the device stored down."""
    registry = Registry()
    await (await bus.subscribe("sensory.>", durable="poll-check")).close()  # from the start
    await asyncio.to_thread(server.stop)
    config = down_on_first_poll(tmp_path, dead_target)
    rx = PollReceiver(config, bus, registry, outage_buffer_seconds=1.0)
    with capture_logs() as logs:
        try:
            await rx.start()
            await eventually(lambda: _deferred(logs, "device_down"), within=WITHIN)
            assert _total(registry, FAILED, error="bus_outage") >= 1
            _, down = await stored(config.state_path)
            assert down == frozenset()
            await asyncio.to_thread(server.start)
            await eventually(
                lambda: _total(registry, PUBLISHED, event_class="device_down") == 1,
                within=WITHIN,
            )
            seen = failures(registry)
            await eventually(lambda: failures(registry) >= seen + 2, within=WITHIN)
        finally:
            await rx.close()
    assert _total(registry, PUBLISHED) == 1  # once, not again by the failures after it
    _, down = await stored(config.state_path)
    assert down == frozenset({"dead-agent"})
    _assert_reported_once(await _stream(bus, "poll-check"), logs, "device_down")


async def test_device_up_lost_to_an_outage_is_reported_when_the_bus_is_back(
    tmp_path: Path, server: NatsServer, bus: NatsEventBus, agent: ScriptedSnmpAgent
) -> None:
    """A ``device_up`` given up to an outage longer than the budget is taken back (the
    device stays stored down); the first answered poll after the bus is back publishes
    it exactly once, and only then is the down flag cleared."""
    registry = Registry()
    config = poll_config(
        tmp_path,
        PollTargetConfig(device="lab-agent", host=agent.host, port=agent.port),
        failure_threshold=1,
    )
    rx = PollReceiver(config, bus, registry, outage_buffer_seconds=1.0)
    with capture_logs() as logs:
        try:
            await rx.start()
            await eventually(lambda: polls(registry) >= 1, within=WITHIN)  # the baseline
            await asyncio.to_thread(agent.stop)
            await eventually(
                lambda: _total(registry, PUBLISHED, event_class="device_down") == 1,
                within=WITHIN,
            )
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(agent.start)
            await eventually(lambda: _deferred(logs, "device_up"), within=WITHIN)
            _, down = await stored(config.state_path)
            assert down == frozenset({"lab-agent"})
            await asyncio.to_thread(server.start)
            await eventually(
                lambda: _total(registry, PUBLISHED, event_class="device_up") == 1, within=WITHIN
            )
            seen = polls(registry)
            await eventually(lambda: polls(registry) >= seen + 2, within=WITHIN)
        finally:
            await rx.close()
    assert _total(registry, PUBLISHED, event_class="device_up") == 1
    _, down = await stored(config.state_path)
    assert down == frozenset()
