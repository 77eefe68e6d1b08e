"""``PollReceiver`` rides out a nats-server restart through ``sensory._publish``.

The poller's reports publish like the trap receiver's (``publish_event`` with the
receiver's ``BusOutage``, ``tests/unit/sensory/test_publish_outage.py``): a real
``NatsEventBus`` on a private ``nats-server`` (file store, so the restarted server
has the same streams) that the test stops before the poller's event exists and
starts again. The event is a ``device_down`` of a target that never answers
(``failure_threshold`` 1: its first poll), so it is made while the bus is gone.
Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from netcortex.config import BusConfig, PollConfig, PollTargetConfig
from netcortex.metrics import Registry
from netcortex.sensory.poll.scheduler import PollReceiver
from netcortex.thalamus.nats import NatsEventBus
from tests.servers import NatsServer
from tests.unit.sensory.poll.test_scheduler import eventually, poll_config
from tests.unit.sensory.test_publish_outage import WITHIN, _drain, _total

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.xdist_group("nats-restart")]

PUBLISHED = "netcortex_poll_published_total"
FAILED = "netcortex_poll_publish_failed_total"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A private nats-server (fixed port, store under ``tmp_path``) this test restarts."""
    store = tmp_path / "nats"
    store.mkdir()
    srv = NatsServer(store_dir=store)
    await asyncio.to_thread(srv.start)
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.cleanup)


@pytest.fixture
async def bus(server: NatsServer) -> AsyncIterator[NatsEventBus]:
    """A started ``NatsEventBus`` on ``server`` whose publishes fail fast (0.5 s) while
    the server is gone, so the receiver's retry path runs."""
    nats_bus = NatsEventBus(
        BusConfig(
            backend="nats", nats_url=server.url, storage="file", namespace="rx", publish_timeout=0.5
        )
    )
    await nats_bus.start()
    try:
        yield nats_bus
    finally:
        await nats_bus.close()


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
