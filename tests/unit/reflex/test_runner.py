"""Unit tests for reflex.runner: bus → decode → gates → handler → sinks → ack, one task each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from netcortex.contracts.bus import BusMessage, Subscription
from netcortex.contracts.codec import decode_outcome, encode_event
from netcortex.contracts.events import SensoryEvent, Severity
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import OutcomeKind, ReflexHandler, ReflexOutcome, outcome_id_for
from netcortex.errors import StoreError
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.metrics import Registry
from netcortex.reflex import runner as runner_module
from netcortex.reflex.handlers import LinkDownHandler, LinkUpHandler
from netcortex.reflex.pipeline import Pipeline, build_pipeline
from netcortex.reflex.registry import HandlerRegistry
from netcortex.reflex.runner import DIAGNOSTIC_LIMIT, ReflexRunner, truncate_traceback
from netcortex.testing import RecordingSink, make_event
from netcortex.thalamus.memory import InMemoryEventBus
from tests.conftest import BusFactory

WAIT = 5.0


class EchoHandler:
    """Logs every event it sees, at ``info``; counts calls and keeps the last context."""

    def __init__(self, hid: str = "echo", patterns: tuple[str, ...] = ("sensory.>",)) -> None:
        self.id = hid
        self.patterns = patterns
        self.dedup_window = 0.0
        self.seen: list[SensoryEvent] = []
        self.context: dict[str, Any] = {}

    async def handle(self, event: SensoryEvent) -> ReflexOutcome | None:
        self.seen.append(event)
        self.context = structlog.contextvars.get_contextvars()
        if event.payload.get("explode"):
            raise ValueError(f"boom {event.payload['explode']}")
        if event.payload.get("skip"):
            return None
        if event.payload.get("wrong_type"):
            return "not an outcome"  # type: ignore[return-value]
        return ReflexOutcome.for_event(self.id, event, severity=Severity.INFO, summary="seen")


class BlockingHandler:
    """Waits for ``release`` before answering, so a test can stop the runner mid-event."""

    id = "blocking"
    patterns: tuple[str, ...] = ("sensory.>",)
    dedup_window = 0.0

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = False
        self.cancelled = False

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.finished = True
        return ReflexOutcome.for_event(self.id, event, severity=Severity.INFO, summary="done")


class FailingSink:
    """A sink that always raises."""

    name = "failing"

    async def emit(self, outcome: ReflexOutcome) -> None:
        raise RuntimeError("sink down")

    async def flush(self) -> None:
        """Nothing is buffered."""


class SkipGate:
    """A gate that stops every event as ``skipped``."""

    name = "dedup"

    async def __call__(
        self, handler: ReflexHandler, event: SensoryEvent, trace: dict[str, Any]
    ) -> OutcomeKind:
        return OutcomeKind.SKIPPED


class EnrichGate:
    """A gate that passes the event on with a site in its payload."""

    name = "enrich"

    async def __call__(
        self, handler: ReflexHandler, event: SensoryEvent, trace: dict[str, Any]
    ) -> SensoryEvent:
        return replace(event, payload={**event.payload, "site": "branch-west"})


class RaisingGate:
    """A gate that breaks its contract by raising."""

    name = "broken"

    async def __call__(
        self, handler: ReflexHandler, event: SensoryEvent, trace: dict[str, Any]
    ) -> SensoryEvent:
        raise KeyError("gate bug")


class UnavailableGate:
    """A gate whose backend is away (``StoreError``) until ``back`` is set."""

    name = "dedup"

    def __init__(self) -> None:
        self.back = asyncio.Event()
        self.calls = 0
        self.failed = asyncio.Event()

    async def __call__(
        self, handler: ReflexHandler, event: SensoryEvent, trace: dict[str, Any]
    ) -> SensoryEvent:
        self.calls += 1
        if not self.back.is_set():
            if self.calls >= 3:
                self.failed.set()
            raise StoreError("dedup write: nats: timeout (test)")
        return event


@asynccontextmanager
async def running(runner: ReflexRunner) -> AsyncIterator[ReflexRunner]:
    """Start ``runner`` and stop it afterwards."""
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def publish(bus: InMemoryEventBus, event: SensoryEvent) -> None:
    """Publish ``event`` the way receivers do (codec JSON, msg_id = event id)."""
    await bus.publish(event.subject, encode_event(event), msg_id=event.id)


async def take(sub: Subscription, count: int) -> list[BusMessage]:
    """The next ``count`` messages of ``sub`` (acked), or TimeoutError."""
    out: list[BusMessage] = []
    async with asyncio.timeout(WAIT):
        while len(out) < count:
            msg = await sub.next()
            await msg.ack()
            out.append(msg)
    return out


def recording_pipeline(*sinks: Any, gates: tuple[Any, ...] = ()) -> tuple[Pipeline, RecordingSink]:
    """A pipeline whose last sink records outcomes for the test to wait on."""
    rec = RecordingSink()
    return Pipeline(gates=gates, sinks=(*sinks, rec)), rec


class TestEndToEnd:
    async def test_one_stored_outcome_per_matching_handler(
        self, bus: InMemoryEventBus, store: SqliteOutcomeStore
    ) -> None:
        """One event yields exactly one stored outcome per matching handler, none for the others."""
        registry = HandlerRegistry([LinkDownHandler(), EchoHandler(), LinkUpHandler()])
        runner = ReflexRunner(registry, bus, build_pipeline(store=store, bus=bus))
        outcomes = await bus.subscribe("reflex.>")
        async with running(runner):
            event = make_event("link_down", device="r1", interface="Gi1/0/3")
            await publish(bus, event)
            msgs = await take(outcomes, 2)
            await store.flush()
            rows = await store.query(OutcomeQuery(limit=10))
        assert sorted(m.subject.split(".")[1] for m in msgs) == ["echo", "link_down"]
        assert sorted((r.handler_id, r.event_id) for r in rows) == [
            ("echo", event.id),
            ("link_down", event.id),
        ]
        link = next(r for r in rows if r.handler_id == "link_down")
        assert (link.kind, link.severity, link.target) == (
            OutcomeKind.LOGGED,
            Severity.HIGH,
            "r1|Gi1/0/3",
        )

    async def test_outcome_published_on_reflex_subject(
        self, bus: InMemoryEventBus, store: SqliteOutcomeStore
    ) -> None:
        """The outcome goes out on reflex.link_down.logged.<tokens> with msg_id = outcome_id."""
        runner = ReflexRunner(
            HandlerRegistry([LinkDownHandler()]), bus, build_pipeline(store=store, bus=bus)
        )
        sub = await bus.subscribe("reflex.link_down.logged.>")
        async with running(runner):
            event = make_event("link_down", device="10.0.0.1", interface="Gi1/0/3")
            await publish(bus, event)
            (msg,) = await take(sub, 1)
            await store.flush()
            stored = await store.get(outcome_id_for("link_down", event.id))
        assert msg.subject == "reflex.link_down.logged.10%2E0%2E0%2E1.Gi1/0/3"
        assert msg.msg_id == outcome_id_for("link_down", event.id)
        assert stored is not None
        assert decode_outcome(msg.data) == stored

    async def test_redelivered_event_stores_one_row(
        self, bus: InMemoryEventBus, store: SqliteOutcomeStore
    ) -> None:
        """The same event delivered twice produces the same outcome id and one stored row.

        Memory bus only: JetStream already drops the re-publish by its msg id, so
        there the store's idempotency guards real redeliveries (nak, ack timeout).
        """
        runner = ReflexRunner(
            HandlerRegistry([LinkDownHandler()]), bus, build_pipeline(store=store, bus=bus)
        )
        sub = await bus.subscribe("reflex.>")
        async with running(runner):
            event = make_event("link_down", interface="Gi1")
            await publish(bus, event)
            await publish(bus, event)
            msgs = await take(sub, 2)
            await store.flush()
            rows = await store.query(OutcomeQuery())
        assert msgs[0].msg_id == msgs[1].msg_id
        assert len(rows) == 1


@pytest.mark.parametrize("backend", ["memory", pytest.param("nats", marks=pytest.mark.nats)])
class TestOnEveryBus:
    """The runner's core promise holds on both bus backends (real nats-server for ``nats``)."""

    async def test_event_to_stored_and_published_outcome(
        self, backend: str, bus_factory: BusFactory, store: SqliteOutcomeStore
    ) -> None:
        """A published link down yields one stored high outcome and one on reflex.link_down.>."""
        bus = await bus_factory(backend)
        registry = HandlerRegistry([LinkDownHandler(), LinkUpHandler()])
        runner = ReflexRunner(registry, bus, build_pipeline(store=store, bus=bus))
        sub = await bus.subscribe("reflex.link_down.logged.>")
        async with running(runner):
            assert runner.ready_event.is_set()
            event = make_event("link_down", device="10.0.0.1", interface="Gi1/0/3")
            await bus.publish(event.subject, encode_event(event), msg_id=event.id)
            (msg,) = await take(sub, 1)
            await store.flush()
            rows = await store.query(OutcomeQuery())
        assert msg.subject == "reflex.link_down.logged.10%2E0%2E0%2E1.Gi1/0/3"
        assert [(r.handler_id, r.event_id, r.severity) for r in rows] == [
            ("link_down", event.id, Severity.HIGH)
        ]
        assert decode_outcome(msg.data) == rows[0]


class TestFailureIsData:
    async def test_raising_handler_yields_errored_and_runner_goes_on(
        self, bus: InMemoryEventBus
    ) -> None:
        """A raising handler yields an errored outcome with a traceback; the runner goes on."""
        metrics = Registry()
        pipeline, rec = recording_pipeline()
        handler = EchoHandler()
        runner = ReflexRunner(HandlerRegistry([handler]), bus, pipeline, metrics)
        with capture_logs() as logs:
            async with running(runner):
                await publish(bus, make_event(payload={"explode": 1}))
                await publish(bus, make_event(payload={}))
                first, second = await rec.wait_for(2, WAIT)
        assert first.kind is OutcomeKind.ERRORED
        assert first.severity is Severity.WARN
        assert first.handler_id == "echo"
        assert first.diagnostic.startswith("Traceback (most recent call last):")
        assert "ValueError: boom 1" in first.diagnostic
        assert "ValueError: boom 1" in first.summary
        assert second.kind is OutcomeKind.LOGGED
        assert (
            metrics.counter("netcortex_reflex_handler_errors_total", "", ("handler",)).value(
                handler="echo"
            )
            == 1
        )
        assert any(e["event"] == "handler_failed" for e in logs)

    async def test_huge_traceback_is_truncated(self, bus: InMemoryEventBus) -> None:
        """An errored outcome's diagnostic is capped and keeps the exception line at its end."""
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([EchoHandler()]), bus, pipeline)
        async with running(runner):
            await publish(bus, make_event(payload={"explode": "x" * 10_000 + " END"}))
            (outcome,) = await rec.wait_for(1, WAIT)
        assert len(outcome.diagnostic) <= DIAGNOSTIC_LIMIT
        assert outcome.diagnostic.startswith("Traceback")
        assert "truncated" in outcome.diagnostic
        assert outcome.diagnostic.rstrip().endswith("END")
        assert len(outcome.summary) <= 200

    async def test_wrong_return_type_is_errored(self, bus: InMemoryEventBus) -> None:
        """A handler returning something other than an outcome or None yields an errored outcome."""
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([EchoHandler()]), bus, pipeline)
        async with running(runner):
            await publish(bus, make_event(payload={"wrong_type": True}))
            (outcome,) = await rec.wait_for(1, WAIT)
        assert outcome.kind is OutcomeKind.ERRORED
        assert "TypeError" in outcome.diagnostic

    async def test_none_records_nothing(self, bus: InMemoryEventBus) -> None:
        """A handler returning None records nothing; only the following event has an outcome."""
        pipeline, rec = recording_pipeline()
        metrics = Registry()
        runner = ReflexRunner(HandlerRegistry([EchoHandler()]), bus, pipeline, metrics)
        async with running(runner):
            await publish(bus, make_event(payload={"skip": True}))
            last = make_event(payload={})
            await publish(bus, last)
            await rec.wait_for(1, WAIT)
        assert [o.event_id for o in rec.outcomes] == [last.id]
        outcomes = metrics.get("netcortex_reflex_outcomes_total")
        assert outcomes is not None
        assert outcomes.total() == 1  # type: ignore[union-attr]

    async def test_failing_sink_does_not_stop_the_others(self, bus: InMemoryEventBus) -> None:
        """A raising sink is logged and counted; later sinks still get the outcome."""
        metrics = Registry()
        pipeline, rec = recording_pipeline(FailingSink())
        runner = ReflexRunner(HandlerRegistry([EchoHandler()]), bus, pipeline, metrics)
        with capture_logs() as logs:
            async with running(runner):
                await publish(bus, make_event())
                await publish(bus, make_event())
                await rec.wait_for(2, WAIT)
        failures = metrics.counter("netcortex_reflex_sink_failures_total", "", ("sink",))
        assert failures.value(sink="failing") == 2
        failed = [e for e in logs if e["event"] == "sink_failed"]
        assert len(failed) == 2
        assert failed[0]["sink"] == "failing"
        assert "sink down" in failed[0]["error"]

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"not json at all", "malformed"),
            (b'{"schema_version": 99}', "schema_version"),
            (b'{"schema_version": 1, "id": "x"}', "malformed"),
        ],
    )
    async def test_bad_message_is_logged_counted_acked(
        self, bus: InMemoryEventBus, data: bytes, reason: str
    ) -> None:
        """An undecodable message is logged and counted by reason; the next one is handled."""
        metrics = Registry()
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([EchoHandler()]), bus, pipeline, metrics)
        with capture_logs() as logs:
            async with running(runner):
                await bus.publish("sensory.snmp.trap.link_down.r1", data)
                good = make_event()
                await publish(bus, good)
                await rec.wait_for(1, WAIT)
        assert [o.event_id for o in rec.outcomes] == [good.id]
        rejected = metrics.counter("netcortex_rejected_total", "", ("source", "reason"))
        assert rejected.value(source="reflex", reason=reason) == 1
        assert [e["reason"] for e in logs if e["event"] == "event_rejected"] == [reason]


class TestGates:
    async def test_terminal_gate_yields_outcome_of_that_kind(self, bus: InMemoryEventBus) -> None:
        """A gate returning a kind stops the event with that kind of outcome; handle is skipped."""
        metrics = Registry()
        handler = EchoHandler()
        pipeline, rec = recording_pipeline(gates=(SkipGate(),))
        runner = ReflexRunner(HandlerRegistry([handler, LinkDownHandler()]), bus, pipeline, metrics)
        async with running(runner):
            await publish(bus, make_event("link_down", interface="Gi1"))
            outcomes = await rec.wait_for(2, WAIT)
        assert handler.seen == []
        by_handler = {o.handler_id: o for o in outcomes}
        assert by_handler["echo"].kind is OutcomeKind.SKIPPED
        assert by_handler["link_down"].kind is OutcomeKind.SKIPPED
        assert by_handler["link_down"].severity is Severity.HIGH  # the handler's nominal severity
        assert by_handler["echo"].severity is Severity.INFO
        assert by_handler["echo"].diagnostic == "dedup"
        stopped = metrics.counter("netcortex_reflex_stopped_total", "", ("handler", "reason"))
        assert stopped.value(handler="echo", reason="dedup") == 1

    async def test_passing_gate_hands_on_its_event(self, bus: InMemoryEventBus) -> None:
        """The event a gate returns (e.g. enriched) is the one the handler receives."""
        handler = EchoHandler()
        pipeline, rec = recording_pipeline(gates=(EnrichGate(),))
        runner = ReflexRunner(HandlerRegistry([handler]), bus, pipeline)
        async with running(runner):
            await publish(bus, make_event())
            await rec.wait_for(1, WAIT)
        assert handler.seen[0].payload["site"] == "branch-west"

    async def test_gate_backend_unavailable_is_retried_not_errored(
        self, bus: InMemoryEventBus
    ) -> None:
        """A gate failing with StoreError (its backend away, e.g. the dedup bucket while
        nats-server restarts) is retried in place: no errored outcome, one normal
        outcome once it answers, counted and logged once each way."""
        handler = EchoHandler()
        gate = UnavailableGate()
        pipeline, rec = recording_pipeline(gates=(gate,))
        metrics = Registry()
        runner = ReflexRunner(HandlerRegistry([handler]), bus, pipeline, metrics)
        with capture_logs() as logs:
            async with running(runner):
                await publish(bus, make_event())
                async with asyncio.timeout(WAIT):
                    await gate.failed.wait()  # three failed attempts, nothing recorded
                assert rec.outcomes == []
                gate.back.set()
                (outcome,) = await rec.wait_for(1, WAIT)
        assert outcome.kind is OutcomeKind.LOGGED
        assert len(handler.seen) == 1
        failures = gate.calls - 1
        assert failures >= 3
        assert f'netcortex_reflex_gate_unavailable_total{{gate="dedup"}} {failures}' in (
            metrics.render()
        )
        events = [e["event"] for e in logs]
        assert events.count("reflex_gate_unavailable") == 1
        assert events.count("reflex_gate_recovered") == 1
        assert "handler_failed" not in events

    async def test_gate_unavailable_past_the_budget_hands_the_event_back(
        self, bus: InMemoryEventBus, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past the in-place retry budget the message is nak'ed, so the bus redelivers
        it (the memory bus has no ack timer: left unsettled it would be stuck); once the
        gate's backend is back the redelivered event gets its one normal outcome."""
        monkeypatch.setattr(runner_module, "_GATE_RETRY_BUDGET", 0.3)
        handler = EchoHandler()
        gate = UnavailableGate()
        pipeline, rec = recording_pipeline(gates=(gate,))
        metrics = Registry()
        runner = ReflexRunner(HandlerRegistry([handler]), bus, pipeline, metrics)
        with capture_logs() as logs:
            async with running(runner):
                await publish(bus, make_event())
                async with asyncio.timeout(WAIT):  # the budget (0.3 s) runs out
                    while True:
                        if "reflex_gate_gave_up" in [e["event"] for e in logs]:
                            break
                        await asyncio.sleep(0.02)
                assert rec.outcomes == []
                gate.back.set()
                (outcome,) = await rec.wait_for(1, WAIT)
        assert outcome.kind is OutcomeKind.LOGGED
        assert 'netcortex_reflex_gate_gave_up_total{gate="dedup"} 1' in metrics.render()

    async def test_raising_gate_yields_errored(self, bus: InMemoryEventBus) -> None:
        """A gate that raises yields an errored outcome and the handler is not called."""
        handler = EchoHandler()
        pipeline, rec = recording_pipeline(gates=(RaisingGate(),))
        runner = ReflexRunner(HandlerRegistry([handler]), bus, pipeline)
        async with running(runner):
            await publish(bus, make_event())
            (outcome,) = await rec.wait_for(1, WAIT)
        assert outcome.kind is OutcomeKind.ERRORED
        assert "gate bug" in outcome.diagnostic
        assert handler.seen == []

    async def test_gate_returning_garbage_yields_errored(self, bus: InMemoryEventBus) -> None:
        """A gate returning neither an event nor a kind yields an errored outcome for the event."""
        handler = EchoHandler()
        pipeline, rec = recording_pipeline(gates=(NoneGate(),))
        runner = ReflexRunner(HandlerRegistry([handler]), bus, pipeline)
        event = make_event()
        async with running(runner):
            await publish(bus, event)
            (outcome,) = await rec.wait_for(1, WAIT)
        assert outcome.kind is OutcomeKind.ERRORED
        assert outcome.event_id == event.id
        assert "gate 'none' returned NoneType" in outcome.diagnostic
        assert handler.seen == []


class NoneGate:
    """A gate that breaks its contract by returning None."""

    name = "none"

    async def __call__(
        self, handler: ReflexHandler, event: SensoryEvent, trace: dict[str, Any]
    ) -> None:
        return None


class TestLifecycle:
    async def test_stop_without_start_is_safe(self, bus: InMemoryEventBus) -> None:
        """stop() on a runner that never started returns quietly, twice."""
        runner = ReflexRunner(HandlerRegistry([EchoHandler()]), bus, Pipeline())
        await runner.stop()
        await runner.stop()
        assert not runner.ready_event.is_set()

    async def test_start_and_stop_are_idempotent(self, bus: InMemoryEventBus) -> None:
        """Starting twice and stopping twice is harmless, and a stopped runner can start again."""
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([EchoHandler()]), bus, pipeline)
        await runner.start()
        await runner.start()
        await publish(bus, make_event())
        await rec.wait_for(1, WAIT)
        await runner.stop()
        await runner.stop()
        await runner.start()
        await publish(bus, make_event())
        await rec.wait_for(2, WAIT)
        await runner.stop()
        assert len(rec.outcomes) == 2

    async def test_ready_event_follows_subscriptions(self, bus: InMemoryEventBus) -> None:
        """ready_event is set once every subscription is open and cleared by stop."""
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([EchoHandler(), LinkDownHandler()]), bus, pipeline)
        assert not runner.ready_event.is_set()
        starter = asyncio.create_task(runner.start())
        await asyncio.wait_for(runner.ready_event.wait(), WAIT)
        await starter
        # Every handler is subscribed once ready: an event now reaches both.
        await publish(bus, make_event("link_down", interface="Gi1"))
        await rec.wait_for(2, WAIT)
        await runner.stop()
        assert not runner.ready_event.is_set()

    async def test_empty_registry_is_ready_at_once(self, bus: InMemoryEventBus) -> None:
        """A runner with no handlers starts, is ready and stops."""
        runner = ReflexRunner(HandlerRegistry(), bus, Pipeline())
        async with running(runner):
            assert runner.ready_event.is_set()

    async def test_start_on_closed_bus_raises_and_stays_stopped(self) -> None:
        """A subscription failure propagates from start and leaves the runner stopped."""
        from netcortex.config import BusConfig
        from netcortex.errors import BusUnavailable

        closed = InMemoryEventBus(BusConfig())
        runner = ReflexRunner(HandlerRegistry([EchoHandler()]), closed, Pipeline())
        with pytest.raises(BusUnavailable):
            await runner.start()
        assert not runner.ready_event.is_set()
        await runner.stop()

    async def test_stop_lets_in_flight_event_finish(self, bus: InMemoryEventBus) -> None:
        """stop() waits for the event being handled to pass its sinks before closing."""
        handler = BlockingHandler()
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([handler]), bus, pipeline)
        await runner.start()
        await publish(bus, make_event())
        await asyncio.wait_for(handler.entered.wait(), WAIT)
        stopping = asyncio.create_task(runner.stop())
        handler.release.set()
        await asyncio.wait_for(stopping, WAIT)
        assert handler.finished
        assert len(rec.outcomes) == 1

    async def test_stop_processes_every_event_already_delivered(
        self, bus: InMemoryEventBus
    ) -> None:
        """Events already queued for a handler when stop() is called are all handled, none lost."""

        class YieldingHandler:
            """Gives the loop a turn inside every event, as real I/O-bound sinks do."""

            id = "yielding"
            patterns: tuple[str, ...] = ("sensory.>",)
            dedup_window = 0.0

            async def handle(self, event: SensoryEvent) -> ReflexOutcome:
                await asyncio.sleep(0)
                return ReflexOutcome.for_event(self.id, event, severity=Severity.INFO, summary="")

        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([YieldingHandler()]), bus, pipeline)
        await runner.start()
        events = [make_event(interface=f"Gi1/0/{i}") for i in range(50)]
        for ev in events:
            await publish(bus, ev)
        await asyncio.wait_for(runner.stop(), WAIT)
        assert {o.event_id for o in rec.outcomes} == {ev.id for ev in events}

    async def test_lost_subscription_is_reopened_and_handling_goes_on(
        self, bus: InMemoryEventBus
    ) -> None:
        """A subscription that dies while the runner runs is reopened; later events are handled."""
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([LinkDownHandler()]), bus, pipeline)
        with capture_logs() as logs:
            async with running(runner):
                first = make_event(interface="Gi1")
                await publish(bus, first)
                await rec.wait_for(1)
                # The bus drops the handler's subscription under it (no public trigger
                # on a healthy bus, so the test closes it directly).
                await runner._workers[0].subscription.close()
                # Events published after the runner reopened its subscription are handled.
                async with asyncio.timeout(WAIT):
                    while not any(e["event"] == "reflex_resubscribed" for e in logs):  # noqa: ASYNC110 - a bounded poll of captured log lines
                        await asyncio.sleep(0.01)
                second = make_event(interface="Gi2")
                await publish(bus, second)
                await rec.wait_for(2)
        assert [o.event_id for o in rec.outcomes] == [first.id, second.id]
        assert [e["event"] for e in logs if e["event"].startswith("reflex_sub")] == [
            "reflex_subscription_lost"
        ]

    async def test_stop_is_bounded_by_drain_timeout(self, bus: InMemoryEventBus) -> None:
        """A handler that never finishes is cancelled once the drain timeout passes."""
        handler = BlockingHandler()
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([handler]), bus, pipeline, drain_timeout=0.05)
        await runner.start()
        await publish(bus, make_event())
        await asyncio.wait_for(handler.entered.wait(), WAIT)
        with capture_logs() as logs:
            await asyncio.wait_for(runner.stop(), WAIT)
        assert handler.cancelled
        assert rec.outcomes == []
        assert any(e["event"] == "reflex_drain_timeout" for e in logs)


class TestObservability:
    async def test_context_binds_handler_and_subject(self, bus: InMemoryEventBus) -> None:
        """While a handler runs, structlog's context carries its handler_id and the subject."""
        handler = EchoHandler()
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([handler]), bus, pipeline)
        event = make_event("link_down", interface="Gi2")
        async with running(runner):
            await publish(bus, event)
            await rec.wait_for(1, WAIT)
        assert handler.context["handler_id"] == "echo"
        assert handler.context["subject"] == event.subject

    async def test_stop_sweep_binds_context_without_leaking_it(self, bus: InMemoryEventBus) -> None:
        """Events handled by stop()'s sweep carry handler_id and subject in the log
        context, and none of it is left bound in the caller of stop() afterwards."""
        handler = EchoHandler()
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([handler]), bus, pipeline)
        event = make_event("link_down", interface="Gi3")
        await runner.start()
        await publish(bus, event)  # queued; the idle handler task is cancelled by stop()
        async with asyncio.timeout(WAIT):
            await runner.stop()  # awaited directly, as Engine does: same context
        assert [o.event_id for o in rec.outcomes] == [event.id]
        assert handler.context["handler_id"] == "echo"
        assert handler.context["subject"] == event.subject
        assert structlog.contextvars.get_contextvars() == {}

    async def test_metrics_count_outcomes_and_latencies(self, bus: InMemoryEventBus) -> None:
        """Outcomes are counted by handler and kind; handler and end-to-end latency are observed."""
        metrics = Registry()
        pipeline, rec = recording_pipeline()
        runner = ReflexRunner(HandlerRegistry([LinkDownHandler()]), bus, pipeline, metrics)
        async with running(runner):
            await publish(bus, make_event("link_down", interface="Gi1"))
            await rec.wait_for(1, WAIT)
        outcomes = metrics.counter(
            "netcortex_reflex_outcomes_total", "", ("handler", "kind", "severity")
        )
        assert outcomes.value(handler="link_down", kind="logged", severity="high") == 1
        handler_s = metrics.histogram("netcortex_reflex_handler_seconds", "", ("handler",))
        e2e_s = metrics.histogram("netcortex_reflex_event_to_outcome_seconds", "", ("handler",))
        assert handler_s.count(handler="link_down") == 1
        assert e2e_s.count(handler="link_down") == 1

    async def test_log_sink_writes_one_info_line(self, bus: InMemoryEventBus) -> None:
        """The pipeline's log sink writes one INFO outcome_recorded line with the facts."""
        pipeline = build_pipeline(store=_NullStore(), bus=bus)
        pipeline, rec = recording_pipeline(*pipeline.sinks)
        runner = ReflexRunner(HandlerRegistry([LinkDownHandler()]), bus, pipeline)
        with capture_logs() as logs:
            async with running(runner):
                await publish(bus, make_event("link_down", device="r1", interface="Gi1/0/3"))
                await rec.wait_for(1, WAIT)
        lines = [e for e in logs if e["event"] == "outcome_recorded"]
        assert len(lines) == 1
        line = lines[0]
        assert line["log_level"] == "info"
        assert (line["severity"], line["handler_id"], line["kind"], line["target"]) == (
            "high",
            "link_down",
            "logged",
            "r1|Gi1/0/3",
        )
        assert line["summary"] == "Link down on r1 Gi1/0/3"


class _NullStore:
    """An OutcomeStore that keeps nothing (for tests that only look at other sinks)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def record(self, outcome: ReflexOutcome) -> None: ...
    async def flush(self) -> None: ...
    async def query(self, query: OutcomeQuery) -> list[ReflexOutcome]:
        return []

    async def get(self, outcome_id: str) -> ReflexOutcome | None:
        return None


class TestTruncateTraceback:
    def test_short_traceback_is_whole(self) -> None:
        """A traceback under the limit is returned unchanged."""
        try:
            raise ValueError("short")
        except ValueError as exc:
            text = truncate_traceback(exc)
        assert text.startswith("Traceback")
        assert text.rstrip().endswith("ValueError: short")
        assert "truncated" not in text

    def test_long_traceback_keeps_head_and_tail(self) -> None:
        """A long traceback keeps its first line and its end, within the limit."""
        try:
            raise ValueError("y" * 5000 + " TAIL")
        except ValueError as exc:
            text = truncate_traceback(exc, limit=500)
        assert len(text) <= 500
        assert text.startswith("Traceback (most recent call last):")
        assert text.rstrip().endswith("TAIL")
