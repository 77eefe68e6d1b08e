"""Receivers ride out a nats-server restart (issue 10, item 3): ``sensory._publish.BusOutage``.

Each test runs its own ``nats-server -js`` (a fixed port and a temporary
JetStream store, so the restarted server has the same streams) and stops and
starts it under a real ``TrapReceiver`` or ``MerakiWebhookReceiver`` publishing
on a real ``NatsEventBus``: accepted events are kept while the server is gone
and published once it is back (each stored once, counted ``published`` once);
past ``outage_buffer_seconds`` they are counted ``bus_outage`` and new input is
refused (``bus_unavailable``, a webhook 503). Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from netcortex.config import BusConfig
from netcortex.contracts.codec import decode_event
from netcortex.metrics import Counter, Registry
from netcortex.sensory.trap import TrapReceiver
from netcortex.sensory.webhook import MerakiWebhookReceiver
from netcortex.thalamus.nats import NatsEventBus
from tests.e2e.harness import v2c_link_down
from tests.servers import NatsServer
from tests.unit.sensory.trap._helpers import send_raw, trap_config, wait_until
from tests.unit.sensory.webhook._helpers import fixture_body, meraki_config, post

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.xdist_group("nats-restart")]

#: Longest wait for one condition (a restart, a reconnect, a drain).
WITHIN = 20.0


@contextlib.asynccontextmanager
async def restartable_nats(store_dir: Path) -> AsyncIterator[NatsServer]:
    """A private nats-server (fixed port, JetStream store in ``store_dir``) a test may
    stop and start, cleaned up on the way out (also used by the poller's outage tests)."""
    await asyncio.to_thread(store_dir.mkdir, parents=True, exist_ok=True)
    srv = NatsServer(store_dir=store_dir)
    await asyncio.to_thread(srv.start)
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.cleanup)


@contextlib.asynccontextmanager
async def fail_fast_bus(server: NatsServer) -> AsyncIterator[NatsEventBus]:
    """A started ``NatsEventBus`` on ``server`` with file storage and a short publish
    timeout (a publish during the outage fails fast, so the receiver's retry path runs:
    nats-py alone rides out a restart shorter than the timeout in its reconnect buffer)."""
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
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A private nats-server this test may restart (``restartable_nats``)."""
    async with restartable_nats(tmp_path) as srv:
        yield srv


@pytest.fixture
async def bus(server: NatsServer) -> AsyncIterator[NatsEventBus]:
    """A started bus on ``server`` whose publishes fail fast (``fail_fast_bus``)."""
    async with fail_fast_bus(server) as nats_bus:
        yield nats_bus


def _stop(server: NatsServer, how: signal.Signals) -> None:
    """Stop ``server`` with ``how`` (SIGTERM: a clean shutdown; SIGKILL: a crash)."""
    if how is signal.SIGTERM:
        server.stop()
        return
    assert server.kill() == -signal.SIGKILL  # a crash is the point


def _total(registry: Registry, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    metric = registry.get(name)
    if metric is None:
        return 0.0
    assert isinstance(metric, Counter)
    wanted = set(labels.items())
    return sum(
        value for sample_labels, value in metric.samples() if wanted <= set(sample_labels.items())
    )


async def _drain(bus: NatsEventBus, durable: str, want: int) -> list[str]:
    """Event ids on the durable ``sensory.>`` consumer until ``want`` arrived (then a
    short quiet wait shows no extra copy comes)."""
    sub = await bus.subscribe("sensory.>", durable=durable)
    ids: list[str] = []
    try:
        async with asyncio.timeout(WITHIN):
            while len(ids) < want:
                msg = await sub.next()
                ids.append(decode_event(msg.data).id)
                await msg.ack()
        with pytest.raises(TimeoutError):
            await sub.next(timeout=0.5)
    finally:
        await sub.close()
    return ids


class TestTrapReceiverOutage:
    @pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
    async def test_restart_mid_stream_loses_nothing(
        self, server: NatsServer, bus: NatsEventBus, how: signal.Signals
    ) -> None:
        """Traps received while nats-server is down (SIGTERM or SIGKILL) are held, then
        published once it is back on the same port and store: every event stored
        exactly once, received == published, nothing rejected or failed."""
        registry = Registry()
        await (await bus.subscribe("sensory.>", durable="check")).close()  # from the start

        def received() -> float:
            return _total(registry, "netcortex_received_total")

        def published() -> float:
            return _total(registry, "netcortex_trap_published_total")

        async with TrapReceiver(trap_config(), bus, registry, publishers=4) as rx:
            port = rx.bound_address[1]
            for i in range(1, 51):
                send_raw(port, v2c_link_down(i, i))
            await wait_until(lambda: published() == 50, within=WITHIN)

            await asyncio.to_thread(_stop, server, how)
            with capture_logs() as logs:
                for i in range(51, 151):
                    send_raw(port, v2c_link_down(i, i))
                await wait_until(lambda: received() == 150, within=WITHIN)
                # Held, not lost and not published: the server is gone.
                await wait_until(lambda: rx.queue_depth() == 100, within=WITHIN)
                assert published() == 50
                # Down past the old fixed retries (4 attempts, then the event was lost).
                await wait_until(
                    lambda: any(
                        e["event"] == "trap_publish_retry" and e["attempt"] >= 5 for e in logs
                    ),
                    within=WITHIN,
                )
                await asyncio.to_thread(server.start)
                await wait_until(lambda: published() == 150, within=WITHIN)
                await wait_until(lambda: rx.queue_depth() == 0, within=WITHIN)
            assert "trap_bus_recovered" in [e["event"] for e in logs]

        assert _total(registry, "netcortex_trap_publish_failed_total") == 0
        assert _total(registry, "netcortex_rejected_total") == 0
        assert (received(), published()) == (150, 150)
        ids = await _drain(bus, "check", 150)
        assert len(ids) == len(set(ids)) == 150

    async def test_outage_past_the_budget_is_counted_and_refused(
        self, server: NatsServer, bus: NatsEventBus
    ) -> None:
        """With nats-server gone longer than ``outage_buffer_seconds`` the held trap is
        counted ``bus_outage`` and logged, a new one is rejected ``bus_unavailable``;
        once the server is back the receiver publishes again."""
        registry = Registry()
        async with TrapReceiver(
            trap_config(), bus, registry, publishers=1, outage_buffer_seconds=1.0
        ) as rx:
            port = rx.bound_address[1]
            await asyncio.to_thread(server.stop)
            with capture_logs() as logs:
                send_raw(port, v2c_link_down(1, 1))
                await wait_until(
                    lambda: (
                        _total(registry, "netcortex_trap_publish_failed_total", error="bus_outage")
                        == 1
                    ),
                    within=WITHIN,
                )
                send_raw(port, v2c_link_down(2, 2))
                await wait_until(
                    lambda: (
                        _total(registry, "netcortex_rejected_total", reason="bus_unavailable") == 1
                    ),
                    within=WITHIN,
                )
            failures = [e for e in logs if e["event"] == "trap_publish_failed"]
            assert [e["error"] for e in failures] == ["bus_outage"]

            await asyncio.to_thread(server.start)
            await wait_until(lambda: bus.connected, within=WITHIN)
            send_raw(port, v2c_link_down(3, 3))
            await wait_until(
                lambda: _total(registry, "netcortex_trap_published_total") == 1, within=WITHIN
            )
        assert _total(registry, "netcortex_received_total") == 3

    async def test_events_held_at_close_are_counted(
        self, server: NatsServer, bus: NatsEventBus
    ) -> None:
        """Closing while nats-server is down: after ``drain_timeout`` every event still
        held — queued or in a publisher's hand — is counted ``drain_timeout``."""
        registry = Registry()
        rx = TrapReceiver(trap_config(), bus, registry, publishers=2, drain_timeout=0.5)
        await rx.start()
        try:
            await asyncio.to_thread(server.stop)
            for i in range(1, 6):
                send_raw(rx.bound_address[1], v2c_link_down(i, i))
            await wait_until(
                lambda: _total(registry, "netcortex_received_total") == 5, within=WITHIN
            )
        finally:
            await rx.close()
        assert _total(registry, "netcortex_trap_publish_failed_total", error="drain_timeout") == 5
        assert _total(registry, "netcortex_trap_published_total") == 0


class TestWebhookOutage:
    async def test_alert_accepted_during_a_restart_is_published_once(
        self, server: NatsServer, bus: NatsEventBus
    ) -> None:
        """An alert accepted (202) while nats-server is down is published once it is back."""
        registry = Registry()
        await (await bus.subscribe("sensory.>", durable="hooks")).close()
        async with MerakiWebhookReceiver(meraki_config(), bus, registry) as rx:
            await asyncio.to_thread(server.stop)
            resp = post(rx, fixture_body("device_aps_went_down.json"))
            assert resp.status == 202, resp.body
            await wait_until(
                lambda: _total(registry, "netcortex_webhook_publish_retries_total") >= 1,
                within=WITHIN,
            )
            await asyncio.to_thread(server.start)
            await wait_until(
                lambda: _total(registry, "netcortex_webhook_published_total") == 1, within=WITHIN
            )
        assert _total(registry, "netcortex_webhook_publish_failed_total") == 0
        assert await _drain(bus, "hooks", 1) == [resp.body["event_id"]]

    async def test_answers_503_once_the_outage_outlasts_the_budget(
        self, server: NatsServer, bus: NatsEventBus
    ) -> None:
        """Past ``outage_buffer_seconds`` of outage the held alert is counted ``bus_outage``
        and a new alert is answered 503 ``bus_unavailable`` (Meraki retries it)."""
        registry = Registry()
        async with MerakiWebhookReceiver(
            meraki_config(), bus, registry, outage_buffer_seconds=1.0
        ) as rx:
            await asyncio.to_thread(server.stop)
            first = post(rx, fixture_body("device_aps_went_down.json"))
            assert first.status == 202
            await wait_until(
                lambda: (
                    _total(registry, "netcortex_webhook_publish_failed_total", error="bus_outage")
                    == 1
                ),
                within=WITHIN,
            )
            second = post(rx, fixture_body("device_aps_came_up.json"))
            assert second.status == 503
            assert second.body["reason"] == "bus_unavailable"
            assert second.headers.get("Retry-After") == "1"

            await asyncio.to_thread(server.start)
            await wait_until(lambda: bus.connected, within=WITHIN)
            third = post(rx, fixture_body("device_aps_came_up.json"))
            assert third.status == 202
            await wait_until(
                lambda: _total(registry, "netcortex_webhook_published_total") == 1, within=WITHIN
            )
        assert _total(registry, "netcortex_rejected_total", reason="bus_unavailable") == 1
