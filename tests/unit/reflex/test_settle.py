"""The runner acks a message only once its outcome is durable (reflex.settle, issue 10 item 2).

A real in-memory bus, wrapped so the test sees every ack (the wrapper only
records and delegates); a durable sink whose flush the test gates or fails, so
"the store has not committed yet" and "the store is down" are states the test
controls and waits on, never timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from netcortex.config import BusConfig
from netcortex.contracts.bus import BusMessage, Subscription
from netcortex.contracts.codec import encode_event
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import StoreError
from netcortex.metrics import Registry
from netcortex.reflex.handlers import LinkDownHandler
from netcortex.reflex.pipeline import Pipeline
from netcortex.reflex.registry import HandlerRegistry
from netcortex.reflex.runner import ReflexRunner
from netcortex.testing import make_event
from netcortex.thalamus.memory import InMemoryEventBus

WAIT = 5.0


class _SpyMessage:
    def __init__(self, msg: BusMessage, acked: list[str | None], changed: asyncio.Event) -> None:
        self._msg = msg
        self._acked = acked
        self._changed = changed
        self.subject = msg.subject
        self.data = msg.data
        self.msg_id = msg.msg_id
        self.attempt = msg.attempt
        self.broken: set[str | None] = set()

    async def ack(self) -> None:
        if self.msg_id in self.broken:
            raise RuntimeError("a backend bug in ack (test)")
        await self._msg.ack()
        self._acked.append(self.msg_id)
        self._changed.set()

    async def nak(self, delay: float = 0.0) -> None:
        await self._msg.nak(delay)


class _SpySubscription:
    def __init__(self, sub: Subscription, bus: _AckSpyBus) -> None:
        self._sub = sub
        self._bus = bus

    async def next(self, timeout: float | None = None) -> BusMessage:
        msg = await self._sub.next(timeout)
        spy = _SpyMessage(msg, self._bus.acked, self._bus.changed)
        spy.broken = self._bus.broken_acks
        return spy

    async def close(self) -> None:
        await self._sub.close()

    def __aiter__(self) -> _SpySubscription:
        return self

    async def __anext__(self) -> BusMessage:
        return await self.next()


class _AckSpyBus:
    """The memory bus, with every ack a runner makes recorded (by message id)."""

    def __init__(self, bus: InMemoryEventBus) -> None:
        self._bus = bus
        self.acked: list[str | None] = []
        self.changed = asyncio.Event()
        self.broken_acks: set[str | None] = set()  # these messages' ack raises

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        await self._bus.publish(subject, data, msg_id=msg_id)

    async def subscribe(
        self, patterns: Sequence[str], *, durable: str | None = None
    ) -> Subscription:
        return _SpySubscription(await self._bus.subscribe(patterns, durable=durable), self)

    async def wait_acked(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.acked) < count:
                self.changed.clear()
                await self.changed.wait()


class _StoreLikeSink:
    """A durable sink: ``emit`` queues, ``flush`` "commits" — gated or failing on demand."""

    name = "store"
    durable = True

    def __init__(self) -> None:
        self.emitted: list[ReflexOutcome] = []
        self.committed: list[str] = []
        self.open = asyncio.Event()  # flush waits for it
        self.open.set()
        self.down = False  # flush raises while True
        self.flushes = 0
        self.failures = 0
        self.flush_entered = asyncio.Event()
        self._queued: list[ReflexOutcome] = []
        self._changed = asyncio.Event()

    async def emit(self, outcome: ReflexOutcome) -> None:
        self.emitted.append(outcome)
        self._queued.append(outcome)
        self._changed.set()

    async def flush(self) -> None:
        self.flushes += 1
        self.flush_entered.set()
        self._changed.set()
        await self.open.wait()
        if self.down:
            self.failures += 1
            self._queued.clear()  # a failed write loses its rows, as the real stores do
            raise StoreError("store down (test)")
        self.committed.extend(o.outcome_id for o in self._queued)
        self._queued.clear()

    async def wait(self, predicate: object, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():  # type: ignore[operator]
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def spy_bus() -> AsyncIterator[_AckSpyBus]:
    async with InMemoryEventBus(BusConfig(publish_timeout=2.0)) as bus:
        yield _AckSpyBus(bus)


async def _publish(bus: _AckSpyBus, interface: str) -> str:
    event = make_event("link_down", device="sw1", interface=interface)
    await bus.publish(event.subject, encode_event(event), msg_id=event.id)
    return event.id


def _runner(
    bus: _AckSpyBus, sink: _StoreLikeSink, metrics: Registry, **kwargs: Any
) -> ReflexRunner:
    return ReflexRunner(
        HandlerRegistry([LinkDownHandler()]),
        bus,  # type: ignore[arg-type]  # the spy has the EventBus methods the runner uses
        Pipeline(gates=(), sinks=(sink,)),
        metrics,
        **{"drain_timeout": 1.0, **kwargs},
    )


async def test_ack_waits_until_the_store_committed_the_outcome(spy_bus: _AckSpyBus) -> None:
    """Processed is not acked: the ack comes only after the durable sink's flush returned."""
    sink, metrics = _StoreLikeSink(), Registry()
    sink.open.clear()  # the "commit" hangs until the test lets it go
    runner = _runner(spy_bus, sink, metrics)
    await runner.start()
    try:
        event_id = await _publish(spy_bus, "Gi0/1")
        await sink.wait(lambda: sink.emitted and sink.flush_entered.is_set())
        assert spy_bus.acked == []  # the outcome exists, the commit has not happened
        assert "netcortex_reflex_unacked 1\n" in metrics.render()
        sink.open.set()
        await spy_bus.wait_acked(1)
        assert spy_bus.acked == [event_id]
        assert sink.committed == [sink.emitted[0].outcome_id]
    finally:
        await runner.stop()


async def test_failed_flush_pauses_handlers_rerecords_and_acks_once_it_works(
    spy_bus: _AckSpyBus,
) -> None:
    """Store down: nothing is acked, no new message is taken, the held outcome is handed
    to the store again on each retry; store back: committed, acked, handling goes on."""
    sink, metrics = _StoreLikeSink(), Registry()
    sink.down = True
    runner = _runner(spy_bus, sink, metrics)
    with capture_logs() as logs:
        await runner.start()
        try:
            first = await _publish(spy_bus, "Gi0/1")
            await sink.wait(lambda: sink.failures >= 1)
            # The handler task was already waiting for its next message when the
            # flush failed: it takes that one (the second), then pauses.
            second = await _publish(spy_bus, "Gi0/2")
            third = await _publish(spy_bus, "Gi0/3")
            # Three more failed retries (back-off 0.1, 0.2, 0.4 s): time enough for the
            # third event to be taken — it is not, the handler is paused.
            await sink.wait(lambda: sink.failures >= 4)
            ids = [o.event_id for o in sink.emitted]
            assert third not in ids
            assert ids.count(first) >= 4  # handed to the store again before each retry
            assert spy_bus.acked == []
            assert "netcortex_reflex_paused 1\n" in metrics.render()
            sink.down = False
            await spy_bus.wait_acked(3)
            assert spy_bus.acked == [first, second, third]
            assert set(sink.committed) == {o.outcome_id for o in sink.emitted}
            assert {o.event_id for o in sink.emitted} == {first, second, third}
        finally:
            await runner.stop()
    events = [e["event"] for e in logs]
    assert events.count("reflex_settle_failed") == 1
    # Each retry's failed flush is counted, but logged once per streak (rate-limited).
    assert events.count("sink_flush_failed") == 1
    assert "reflex_settle_recovered" in events
    assert f"netcortex_reflex_settle_failures_total {sink.failures}\n" in metrics.render()
    assert "netcortex_reflex_paused 0\n" in metrics.render()


async def test_stop_with_the_store_down_leaves_the_message_unacked(
    spy_bus: _AckSpyBus,
) -> None:
    """A stop that cannot make the outcome durable does not ack it (the bus redelivers)."""
    sink, metrics = _StoreLikeSink(), Registry()
    sink.down = True
    runner = _runner(spy_bus, sink, metrics)
    with capture_logs() as logs:
        await runner.start()
        await _publish(spy_bus, "Gi0/1")
        await sink.wait(lambda: sink.failures >= 1)
        await runner.stop()
    assert spy_bus.acked == []
    assert next(e for e in logs if e["event"] == "reflex_unacked_at_stop")["messages"] == 1
    # Started again with the store back: the handlers are not left paused.
    sink.down = False
    await runner.start()
    try:
        event_id = await _publish(spy_bus, "Gi0/9")
        await spy_bus.wait_acked(1)
        assert spy_bus.acked == [event_id]
    finally:
        await runner.stop()


async def test_a_slow_flush_holds_at_most_max_unacked_then_the_handlers_wait(
    spy_bus: _AckSpyBus,
) -> None:
    """While a flush hangs (not failed yet), the handlers hold at most ``max_unacked``
    more messages, then take no new one; once it answers, everything is acked."""
    sink, metrics = _StoreLikeSink(), Registry()
    sink.open.clear()
    runner = _runner(spy_bus, sink, metrics, max_unacked=5)
    await runner.start()
    try:
        ids = [await _publish(spy_bus, f"Gi0/{i}") for i in range(20)]
        await sink.wait(lambda: sink.flush_entered.is_set())
        settler = runner._settler  # the bound is the settler's state
        async with asyncio.timeout(WAIT):  # the handler task fills the room
            while True:
                if not settler.has_room:
                    break
                await asyncio.sleep(0.01)
        taken = len(sink.emitted)
        assert settler.held == 5
        assert taken < len(ids)  # the rest waits in the bus, not in memory
        sink.open.set()
        await spy_bus.wait_acked(len(ids))
        assert sorted(spy_bus.acked) == sorted(ids)  # type: ignore[type-var]
    finally:
        await runner.stop()


async def test_stop_is_bounded_when_the_last_flush_hangs(spy_bus: _AckSpyBus) -> None:
    """A store whose flush never answers does not hold ``stop()`` past the drain
    budget (the store's own close flushes again later)."""
    sink, metrics = _StoreLikeSink(), Registry()
    sink.open.clear()  # never answers
    runner = _runner(spy_bus, sink, metrics, drain_timeout=0.5)
    await runner.start()
    await _publish(spy_bus, "Gi0/1")
    await sink.wait(lambda: sink.flush_entered.is_set())
    with capture_logs() as logs:
        async with asyncio.timeout(5.0):
            await runner.stop()
    assert spy_bus.acked == []
    assert "reflex_final_flush_timeout" in [e["event"] for e in logs]


async def test_an_ack_that_raises_unexpectedly_does_not_stop_the_acks(
    spy_bus: _AckSpyBus,
) -> None:
    """One message whose ack raises something other than BusError (a backend bug) is
    counted and logged; the settler goes on acking the others and later batches."""
    sink, metrics = _StoreLikeSink(), Registry()
    runner = _runner(spy_bus, sink, metrics)
    await runner.start()
    try:
        with capture_logs() as logs:
            first = await _publish(spy_bus, "Gi0/1")
            spy_bus.broken_acks.add(first)
            await sink.wait(lambda: len(sink.committed) >= 1)
            second = await _publish(spy_bus, "Gi0/2")
            await spy_bus.wait_acked(1)
        assert spy_bus.acked == [second]
        assert [e["event"] for e in logs].count("ack_failed") == 1
        assert "reflex_settle_crashed" not in [e["event"] for e in logs]
        assert 'netcortex_reflex_ack_failures_total{handler="link_down"} 1' in metrics.render()
    finally:
        await runner.stop()
