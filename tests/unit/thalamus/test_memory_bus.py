"""InMemoryEventBus behaviour beyond the shared contract: back-pressure, routing cache."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from netcortex.errors import PublishTimeout
from netcortex.metrics import Registry
from tests.conftest import BusFactory

SUBJECT = "sensory.snmp.trap.link_down.r1.Gi1"


def _count(metrics: Registry, name: str) -> float:
    counter = metrics.get(name)
    return 0.0 if counter is None else counter.total()  # type: ignore[union-attr]


class TestBackPressure:
    async def test_full_queue_times_out_with_publish_timeout_and_is_counted(
        self, bus_factory: BusFactory
    ) -> None:
        """A subscriber queue that stays full makes publish raise PublishTimeout after
        publish_timeout, and both the wait and the timeout are counted — never a silent drop."""
        metrics = Registry()
        bus = await bus_factory("memory", queue_size=2, publish_timeout=0.05, metrics=metrics)
        sub = await bus.subscribe("sensory.>")
        await bus.publish(SUBJECT, b"1")
        await bus.publish(SUBJECT, b"2")
        with capture_logs() as logs, pytest.raises(PublishTimeout):
            await bus.publish(SUBJECT, b"3")
        assert _count(metrics, "netcortex_bus_backpressure_total") == 1
        assert _count(metrics, "netcortex_bus_publish_timeouts_total") == 1
        assert [e["event"] for e in logs] == ["bus_publish_timeout"]
        assert [(await sub.next(timeout=1)).data for _ in range(2)] == [b"1", b"2"]

    async def test_publisher_waits_until_the_subscriber_makes_room(
        self, bus_factory: BusFactory
    ) -> None:
        """A publish blocked on a full queue completes as soon as the subscriber takes one."""
        metrics = Registry()
        bus = await bus_factory("memory", queue_size=1, publish_timeout=5, metrics=metrics)
        sub = await bus.subscribe("sensory.>")
        await bus.publish(SUBJECT, b"1")
        blocked = asyncio.create_task(bus.publish(SUBJECT, b"2"))
        await asyncio.sleep(0.01)  # let it reach the wait (asserting it has not finished)
        assert not blocked.done()
        assert (await sub.next(timeout=1)).data == b"1"
        await asyncio.wait_for(blocked, 1)
        assert (await sub.next(timeout=1)).data == b"2"
        assert _count(metrics, "netcortex_bus_backpressure_total") == 1

    async def test_fan_out_is_all_or_nothing(self, bus_factory: BusFactory) -> None:
        """When one of two matching subscriptions stays full, the publish times out and the
        other subscription does not get the message either."""
        bus = await bus_factory("memory", queue_size=1, publish_timeout=0.05)
        slow = await bus.subscribe("sensory.>")
        fast = await bus.subscribe("sensory.>")
        await bus.publish(SUBJECT, b"1")
        assert (await fast.next(timeout=1)).data == b"1"
        with pytest.raises(PublishTimeout):
            await bus.publish(SUBJECT, b"2")
        with pytest.raises(TimeoutError):
            await fast.next(timeout=0.05)
        assert (await slow.next(timeout=1)).data == b"1"

    async def test_closing_the_full_subscription_releases_the_publisher(
        self, bus_factory: BusFactory
    ) -> None:
        """A publisher waiting on a full queue goes on when that subscription closes."""
        bus = await bus_factory("memory", queue_size=1, publish_timeout=5)
        sub = await bus.subscribe("sensory.>")
        await bus.publish(SUBJECT, b"1")
        blocked = asyncio.create_task(bus.publish(SUBJECT, b"2"))
        await asyncio.sleep(0.01)
        await sub.close()
        await asyncio.wait_for(blocked, 1)


class TestRouting:
    async def test_route_cache_sees_new_and_closed_subscriptions(
        self, bus_factory: BusFactory
    ) -> None:
        """The per-subject match cache is refreshed when subscriptions open and close."""
        bus = await bus_factory("memory")
        first = await bus.subscribe("sensory.>")
        await bus.publish(SUBJECT, b"1")  # caches the route: [first]
        second = await bus.subscribe("sensory.*.*.link_down.>")
        await bus.publish(SUBJECT, b"2")
        assert (await second.next(timeout=1)).data == b"2"
        await first.close()
        await bus.publish(SUBJECT, b"3")
        assert (await second.next(timeout=1)).data == b"3"

    async def test_dead_letter_is_logged_with_context(self, bus_factory: BusFactory) -> None:
        """Giving a message up at max_deliver logs bus_dead_letter with subject and msg_id."""
        bus = await bus_factory("memory", max_deliver=1)
        sub = await bus.subscribe("sensory.>")
        await bus.publish(SUBJECT, b"x", msg_id="e1")
        msg = await sub.next(timeout=1)
        with capture_logs() as logs:
            await msg.nak()
        assert logs == [
            {
                "event": "bus_dead_letter",
                "log_level": "warning",
                "backend": "memory",
                "subject": SUBJECT,
                "msg_id": "e1",
                "attempts": 1,
            }
        ]

    async def test_next_from_many_tasks_hands_each_message_to_one(
        self, bus_factory: BusFactory
    ) -> None:
        """Several tasks awaiting next() on one subscription each get different messages."""
        bus = await bus_factory("memory")
        sub = await bus.subscribe("sensory.>")
        waiters = [asyncio.create_task(sub.next(timeout=2)) for _ in range(3)]
        await asyncio.sleep(0.01)
        for i in range(3):
            await bus.publish(SUBJECT, b"%d" % i)
        got = sorted(m.data for m in await asyncio.gather(*waiters))
        assert got == [b"0", b"1", b"2"]

    async def test_cancelled_next_loses_nothing(self, bus_factory: BusFactory) -> None:
        """Cancelling a waiting next() does not swallow the message published afterwards."""
        bus = await bus_factory("memory")
        sub = await bus.subscribe("sensory.>")
        waiter = asyncio.create_task(sub.next())
        await asyncio.sleep(0.01)
        waiter.cancel()
        await bus.publish(SUBJECT, b"kept")
        assert (await sub.next(timeout=1)).data == b"kept"
