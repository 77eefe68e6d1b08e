"""The runner acks a message only once its outcome is durable (reflex.settle, issue 10 item 2).

A real in-memory bus (or a real nats-server, where JetStream's ack timer is the
point), wrapped so the test sees every ack and in-progress signal (the wrapper
only records and delegates); a durable sink whose flush the test gates or fails,
so "the store has not committed yet" and "the store is down" are states the test
controls and waits on, never timing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from netcortex.config import BusConfig
from netcortex.contracts.bus import BusMessage, EventBus, Subscription
from netcortex.contracts.codec import encode_event
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome, Severity
from netcortex.errors import BusUnavailable, StoreError
from netcortex.memory.semantic import FileInventory
from netcortex.metrics import Registry
from netcortex.reflex.gates import EnrichGate, MaintenanceGate
from netcortex.reflex.handlers import LinkDownHandler
from netcortex.reflex.pipeline import Pipeline
from netcortex.reflex.registry import HandlerRegistry
from netcortex.reflex.runner import ReflexRunner
from netcortex.reflex.settle import AckSettler
from netcortex.testing import make_event
from netcortex.thalamus.memory import InMemoryEventBus
from tests.conftest import BusFactory
from tests.unit.reflex.test_reevaluation import long_window

WAIT = 5.0


class _SpyMessage:
    def __init__(self, msg: BusMessage, bus: _AckSpyBus) -> None:
        self._msg = msg
        self._bus = bus
        self._acked = bus.acked
        self._changed = bus.changed
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

    async def in_progress(self) -> None:
        if self.msg_id in self._bus.broken_progress:
            raise BusUnavailable("in_progress refused (test)")
        await self._msg.in_progress()
        self._bus.progress[self.msg_id] += 1
        self._changed.set()


class _SpySubscription:
    def __init__(self, sub: Subscription, bus: _AckSpyBus) -> None:
        self._sub = sub
        self._bus = bus

    async def next(self, timeout: float | None = None) -> BusMessage:
        msg = await self._sub.next(timeout)
        self._bus.attempts.append((msg.msg_id, msg.attempt))
        spy = _SpyMessage(msg, self._bus)
        spy.broken = self._bus.broken_acks
        return spy

    async def close(self) -> None:
        await self._sub.close()

    def __aiter__(self) -> _SpySubscription:
        return self

    async def __anext__(self) -> BusMessage:
        return await self.next()


class _AckSpyBus:
    """A real bus, with every ack and in-progress signal a runner makes recorded (by
    message id), and every delivery's attempt."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.acked: list[str | None] = []
        self.progress: Counter[str | None] = Counter()  # in_progress calls that went through
        self.attempts: list[tuple[str | None, int]] = []  # every delivery taken
        self.changed = asyncio.Event()
        self.broken_acks: set[str | None] = set()  # these messages' ack raises
        self.broken_progress: set[str | None] = set()  # these messages' in_progress raises

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        await self._bus.publish(subject, data, msg_id=msg_id)

    async def subscribe(
        self, patterns: Sequence[str], *, durable: str | None = None
    ) -> Subscription:
        return _SpySubscription(await self._bus.subscribe(patterns, durable=durable), self)

    async def wait_acked(self, count: int, timeout: float = WAIT) -> None:
        await self.wait(lambda: len(self.acked) >= count, timeout)

    async def wait(self, predicate: Callable[[], object], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
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


async def _publish(bus: _AckSpyBus, interface: str, device: str = "sw1") -> str:
    event = make_event("link_down", device=device, interface=interface)
    await bus.publish(event.subject, encode_event(event), msg_id=event.id)
    return event.id


def _runner(
    bus: _AckSpyBus,
    sink: _StoreLikeSink,
    metrics: Registry,
    pipeline: Pipeline | None = None,
    **kwargs: Any,
) -> ReflexRunner:
    return ReflexRunner(
        HandlerRegistry([LinkDownHandler()]),
        bus,  # type: ignore[arg-type]  # the spy has the EventBus methods the runner uses
        pipeline if pipeline is not None else Pipeline(gates=(), sinks=(sink,)),
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
            # Both taken messages are in the batch being retried: the gauge counts them.
            assert "netcortex_reflex_unacked 2\n" in metrics.render()
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
    assert "netcortex_reflex_unacked 0\n" in metrics.render()


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
        # The gauge counts the batch whose flush hangs as well as the 5 waiting.
        assert taken > 5
        assert settler.unacked == taken
        assert f"netcortex_reflex_unacked {taken}\n" in metrics.render()
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


async def test_held_messages_are_kept_in_progress_and_refusals_are_counted(
    spy_bus: _AckSpyBus,
) -> None:
    """While the store is down every held message gets ``in_progress()`` about every
    third of ``ack_wait``; one the bus refuses is counted and logged, the others go on
    being signalled, and once the store is back both are acked."""
    sink, metrics = _StoreLikeSink(), Registry()
    sink.down = True
    runner = _runner(spy_bus, sink, metrics, ack_wait=0.6)
    with capture_logs() as logs:
        await runner.start()
        try:
            first = await _publish(spy_bus, "Gi0/1")
            await sink.wait(lambda: sink.failures >= 1)
            second = await _publish(spy_bus, "Gi0/2")  # taken by the waiting handler task
            spy_bus.broken_progress.add(second)
            await sink.wait(lambda: len(sink.emitted) >= 2)
            await spy_bus.wait(lambda: spy_bus.progress[first] >= 3)
            assert spy_bus.acked == []
            assert spy_bus.progress[second] == 0
            sink.down = False
            await spy_bus.wait_acked(2)
            assert spy_bus.acked == [first, second]
        finally:
            await runner.stop()
    rendered = metrics.render()
    assert 'netcortex_reflex_in_progress_failed_total{handler="link_down"}' in rendered
    failed = [e for e in logs if e["event"] == "reflex_in_progress_failed"]
    assert failed
    assert "BusUnavailable" in failed[0]["error"]
    assert "reflex_settle_crashed" not in [e["event"] for e in logs]


@pytest.mark.nats
async def test_outage_longer_than_ack_wait_times_max_deliver_loses_and_repeats_nothing(
    bus_factory: BusFactory,
) -> None:
    """On a real nats-server with ``ack_wait`` 2 s and ``max_deliver`` 2, a store outage
    of 6 s (1.5 x ack_wait x max_deliver) with every message held: nothing is
    redelivered or dropped, and once the store is back each outcome is committed
    exactly once and each message acked."""
    # ack_wait 2 s: a held message is signalled at most ~1 s after its last signal (a
    # third of ack_wait, checked every sixth), so a loaded machine has ~1 s of slack.
    bus = await bus_factory("nats", ack_wait=2.0, max_deliver=2, metrics=Registry())
    spy = _AckSpyBus(bus)
    sink, metrics = _StoreLikeSink(), Registry()
    count = 5
    sink.down = True
    # The outage begins once every message is held (none waits in the client's buffer,
    # which is not the settler's to keep in progress).
    sink.open.clear()
    runner = _runner(spy, sink, metrics, ack_wait=2.0)
    outage = 6.0
    await runner.start()
    try:
        ids = [await _publish(spy, f"Gi0/{i}") for i in range(count)]
        await sink.wait(lambda: len(sink.emitted) >= count)
        sink.open.set()
        await sink.wait(lambda: sink.failures >= 1)
        await asyncio.sleep(outage)  # the outage itself (a duration, not a wait for an event)
        assert spy.acked == []
        sink.down = False
        await spy.wait_acked(count, timeout=15.0)
        # A marker published after the recovery is taken after anything redelivered
        # meanwhile (one handler task, the subscription's order): once it is acked,
        # every redelivery would have been handled.
        marker = await _publish(spy, "Gi9/9", device="sw9")
        await spy.wait_acked(count + 1, timeout=15.0)
    finally:
        await runner.stop()
    assert sorted(spy.acked) == sorted([*ids, marker])  # type: ignore[type-var]
    assert spy.attempts == [(i, 1) for i in [*ids, marker]]  # nothing came back
    # Kept in progress all along: at least once per ack_wait of the outage.
    assert min(spy.progress[i] for i in ids) >= outage / 2.0
    committed = Counter(sink.committed)
    assert set(committed.values()) == {1}
    assert {o.event_id for o in sink.emitted if o.outcome_id in committed} == {*ids, marker}
    assert 'netcortex_reflex_handled_total{handler="link_down"} 6' in metrics.render()


SW1 = "192.0.2.11"  # sw1-north in the shared NetBox fixture inventory


async def test_reevaluated_outcome_is_recorded_again_after_a_failed_flush(
    spy_bus: _AckSpyBus, tmp_path: Path, inventory: FileInventory
) -> None:
    """A fact's outcome re-evaluated when its maintenance window ends (no message of
    its own) is in the failed write with the others: the settler records it again,
    so it is committed once the store is back."""
    cal = await long_window(tmp_path, "mw-long")
    sink, metrics = _StoreLikeSink(), Registry()
    pipeline = Pipeline(
        gates=(EnrichGate(inventory), MaintenanceGate(cal)), sinks=(sink,), calendar=cal
    )
    runner = _runner(spy_bus, sink, metrics, pipeline=pipeline)
    await runner.start()
    try:
        down = make_event(
            "link_down", device=SW1, interface="ifIndex=3", agent=SW1, payload={"if_index": 3}
        )
        await spy_bus.publish(down.subject, encode_event(down), msg_id=down.id)
        await spy_bus.wait_acked(1)  # its suppressed shadow is committed
        sink.down = True
        assert await cal.remove("mw-long")
        await runner.release_held()
        (after,) = [o for o in sink.emitted if o.trace.get("reevaluated_after") == "mw-long"]
        assert after.kind is OutcomeKind.LOGGED
        marker = await _publish(spy_bus, "Gi9/9", device="r9")
        await sink.wait(lambda: sink.failures >= 1 and len(sink.emitted) >= 3)
        sink.down = False
        await spy_bus.wait_acked(2)
        assert spy_bus.acked == [down.id, marker]
        assert after.outcome_id in sink.committed
    finally:
        await runner.stop()
        await cal.close()


async def test_stop_skips_the_final_flush_when_everything_was_settled(
    spy_bus: _AckSpyBus,
) -> None:
    """A stop whose settler made every outcome durable does not flush the sinks again;
    one whose settler could not (cut in its back-off) records them again and flushes."""
    sink, metrics = _StoreLikeSink(), Registry()
    runner = _runner(spy_bus, sink, metrics, drain_timeout=0.3)
    await runner.start()
    await _publish(spy_bus, "Gi0/1")
    await spy_bus.wait_acked(1)
    flushes = sink.flushes
    await runner.stop()
    assert sink.flushes == flushes
    # Not settled: the store refuses until the stop's own flush.
    sink.down = True
    await runner.start()
    await _publish(spy_bus, "Gi0/2")
    # Five failed flushes: the settler now sleeps 1.6 s, far past the 0.3 s drain.
    await sink.wait(lambda: sink.failures >= 5)
    sink.down = False
    flushes = sink.flushes
    await runner.stop()
    assert sink.flushes > flushes
    assert len(spy_bus.acked) == 1  # the second message is left to the bus
    assert sink.emitted[-1].outcome_id in sink.committed


async def test_stop_during_the_back_off_records_a_reevaluated_outcome_again(
    spy_bus: _AckSpyBus, tmp_path: Path, inventory: FileInventory
) -> None:
    """A stop that cuts the settler's back-off (the store just came back) records the
    outcomes of the failed batch again before its last flush: a re-evaluated outcome,
    which no message would bring back, is committed, not lost with the failed batch."""
    cal = await long_window(tmp_path, "mw-cut")
    sink, metrics = _StoreLikeSink(), Registry()
    pipeline = Pipeline(
        gates=(EnrichGate(inventory), MaintenanceGate(cal)), sinks=(sink,), calendar=cal
    )
    runner = _runner(spy_bus, sink, metrics, pipeline=pipeline, drain_timeout=0.3)
    await runner.start()
    try:
        down = make_event(
            "link_down", device=SW1, interface="ifIndex=3", agent=SW1, payload={"if_index": 3}
        )
        await spy_bus.publish(down.subject, encode_event(down), msg_id=down.id)
        await spy_bus.wait_acked(1)
        sink.down = True
        assert await cal.remove("mw-cut")
        await runner.release_held()
        (after,) = [o for o in sink.emitted if o.trace.get("reevaluated_after") == "mw-cut"]
        # Five failed flushes: the settler now sleeps 1.6 s, far past the 0.3 s drain.
        await sink.wait(lambda: sink.failures >= 5)
        sink.down = False
    finally:
        with capture_logs() as logs:
            await runner.stop()
        await cal.close()
    assert after.outcome_id in sink.committed
    (unacked,) = [e for e in logs if e["event"] == "reflex_unacked_at_stop"]
    assert unacked["outcomes_without_message"] == 1
    assert unacked["not_durable"] == 1


class _Msg:
    """A ``BusMessage`` at the settler's seam: records its ack and in-progress signals;
    its ``in_progress`` can be made to raise or to wait for ``gate``, its ack to hang."""

    subject = "sensory.test"
    data = b""
    attempt = 1

    def __init__(self, msg_id: str) -> None:
        self.msg_id = msg_id
        self.acked = False
        self.progress = 0  # in_progress calls that went through
        self.refuse: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.progress_started = 0
        self.progress_cancelled = False
        self.hang_ack = False

    async def ack(self) -> None:
        if self.hang_ack:
            await asyncio.Event().wait()
        self.acked = True

    async def nak(self, delay: float = 0.0) -> None:
        raise AssertionError("the settler never naks")

    async def in_progress(self) -> None:
        self.progress_started += 1
        if self.refuse is not None:
            raise self.refuse
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.progress_cancelled = True
            raise
        self.progress += 1


def _outcome(interface: str) -> ReflexOutcome:
    event = make_event("link_down", device="sw1", interface=interface)
    return ReflexOutcome.for_event("h", event, severity=Severity.HIGH, summary="down")


async def _until(predicate: Callable[[], object], timeout: float = WAIT) -> None:
    """Wait (polling) until ``predicate()`` holds; ``TimeoutError`` after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - a bounded poll of plain state and log lines
            await asyncio.sleep(0.01)


def _settler(flush: Callable[[], Any], metrics: Registry, **kwargs: Any) -> AckSettler:
    async def rerecord(outcomes: Sequence[ReflexOutcome]) -> None:
        return None

    return AckSettler(flush, rerecord, metrics, **kwargs)


async def _store_down() -> bool:
    return False


async def test_a_crashed_settler_stops_signalling_and_close_counts_its_batch() -> None:
    """When the settling task dies of a bug its messages are no longer kept in progress
    (the bus redelivers them), and ``close`` reports its batch as left, not settled."""
    calls = 0

    async def broken_flush() -> bool:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug in flush (test)")

    metrics = Registry()
    settler = _settler(broken_flush, metrics, ack_wait=0.6)
    msg, outcome = _Msg("m1"), _outcome("Gi0/1")
    with capture_logs() as logs:
        settler.start()
        # Held long enough ago that every round (each 0.1 s) would signal it.
        settler.hold("h", msg, outcome, since=0.0)
        await _until(lambda: "reflex_settle_crashed" in [e["event"] for e in logs])
        await asyncio.sleep(0.5)  # five rounds' time: none may signal it
        assert msg.progress_started == 0
        unsettled = await settler.close(1.0)
    assert unsettled == [outcome]
    assert not msg.acked
    (left,) = [e for e in logs if e["event"] == "reflex_unacked_at_stop"]
    assert left["messages"] == 1


async def test_close_does_not_count_messages_acked_before_it_cut_the_acks() -> None:
    """A close that cuts the acks of a committed batch counts only the messages not acked
    yet as left, and gives back no outcome (they are durable)."""

    async def flush() -> bool:
        return True

    settler = _settler(flush, Registry())
    msgs = [_Msg(f"m{i}") for i in range(3)]
    msgs[1].hang_ack = True
    settler.start()
    for i, msg in enumerate(msgs):
        settler.hold("h", msg, _outcome(f"Gi0/{i}"))
    await _until(lambda: msgs[0].acked)
    with capture_logs() as logs:
        unsettled = await settler.close(0.2)
    assert unsettled == []
    assert [m.acked for m in msgs] == [True, False, False]
    (left,) = [e for e in logs if e["event"] == "reflex_unacked_at_stop"]
    assert left["messages"] == 2
    assert left["not_durable"] == 0
    assert settler.unacked == 0


async def test_the_first_failed_flush_signals_every_held_message_at_once() -> None:
    """A message may have waited in the client's buffer before it was handled: at the
    first failed flush it gets ``in_progress`` at once, not a third of ``ack_wait`` on."""
    settler = _settler(_store_down, Registry(), ack_wait=30.0)
    msg = _Msg("m1")
    settler.start()
    try:
        settler.hold("h", msg, _outcome("Gi0/1"))
        await _until(lambda: msg.progress >= 1, timeout=2.0)  # the next round is 5 s away
    finally:
        await settler.close(0.0)


async def test_one_round_signals_every_message_within_its_deadline() -> None:
    """Messages whose ``in_progress`` hangs do not delay the others' signals past the
    round's deadline (a sixth of ``ack_wait``); they are counted as failed."""
    metrics = Registry()
    settler = _settler(_store_down, metrics, ack_wait=3.0)
    stuck = [_Msg(f"stuck{i}") for i in range(9)]
    for msg in stuck:
        msg.gate = asyncio.Event()  # never set
    good = _Msg("good")
    with capture_logs() as logs:
        settler.start()
        try:
            for i, msg in enumerate([*stuck, good]):
                settler.hold("h", msg, _outcome(f"Gi0/{i}"))
            # A serial round (0.5 s per stuck message) would reach it after 4.5 s.
            await _until(lambda: good.progress >= 1, timeout=1.0)
            await _until(lambda: "reflex_in_progress_failed" in [e["event"] for e in logs])
        finally:
            await settler.close(0.0)
    failed = next(e for e in logs if e["event"] == "reflex_in_progress_failed")
    assert (failed["messages"], failed["of"]) == (9, 10)
    assert "TimeoutError" in failed["error"]
    assert 'netcortex_reflex_in_progress_failed_total{handler="h"} ' in metrics.render()


def _failed_signals(metrics: Registry) -> float:
    for line in metrics.render().splitlines():
        if line.startswith("netcortex_reflex_in_progress_failed_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_refused_signals_are_logged_once_per_streak() -> None:
    """NATS refusing every round writes one ``reflex_in_progress_failed`` per streak (the
    rest counted); a round that goes through ends the streak, the next refusal logs."""
    metrics = Registry()
    settler = _settler(_store_down, metrics, ack_wait=0.6)  # a round every 0.1 s
    msg = _Msg("m1")
    msg.refuse = BusUnavailable("NATS away (test)")
    with capture_logs() as logs:
        settler.start()
        try:
            settler.hold("h", msg, _outcome("Gi0/1"))
            await _until(lambda: _failed_signals(metrics) >= 5)
            assert [e["event"] for e in logs].count("reflex_in_progress_failed") == 1
            msg.refuse = None
            await _until(lambda: msg.progress >= 1)
            refused = _failed_signals(metrics)
            msg.refuse = BusUnavailable("NATS away again (test)")
            await _until(lambda: _failed_signals(metrics) > refused)
        finally:
            await settler.close(0.0)
    failed = [e for e in logs if e["event"] == "reflex_in_progress_failed"]
    assert len(failed) == 2
    assert [e["suppressed"] for e in failed] == [0, 0]
    assert "NATS away again" in failed[1]["error"]


async def test_close_ends_a_signal_round_in_flight() -> None:
    """``close`` cancels an in-progress signal still under way: once it returns, no
    message is signalled (it is the bus's to redeliver)."""
    settler = _settler(_store_down, Registry(), ack_wait=30.0)
    msg = _Msg("m1")
    msg.gate = asyncio.Event()
    settler.start()
    settler.hold("h", msg, _outcome("Gi0/1"))
    await _until(lambda: msg.progress_started >= 1)  # the first failed flush's round
    await settler.close(0.0)
    assert msg.progress_cancelled
    msg.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert msg.progress == 0
