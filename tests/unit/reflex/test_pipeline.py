"""Unit tests for reflex.pipeline and reflex.sinks: the order, and what each sink does."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from structlog.testing import capture_logs

from netcortex.contracts.codec import decode_outcome
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import OutcomeKind
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.reflex.handlers import LinkDownHandler, SecurityWebhookHandler
from netcortex.reflex.pipeline import Pipeline, build_pipeline
from netcortex.reflex.sinks import BusSink, LogSink, StoreSink
from netcortex.testing import make_event
from netcortex.thalamus.memory import InMemoryEventBus


class _Gate:
    name = "noop"

    async def __call__(self, handler, event, trace):  # type: ignore[no-untyped-def]
        return event


class TestBuildPipeline:
    async def test_sinks_in_order_log_store_bus(
        self, bus: InMemoryEventBus, store: SqliteOutcomeStore
    ) -> None:
        """build_pipeline orders the sinks log → store → bus and has no gates by default."""
        pipeline = build_pipeline(store=store, bus=bus)
        assert pipeline.gates == ()
        assert [type(s) for s in pipeline.sinks] == [LogSink, StoreSink, BusSink]
        assert [s.name for s in pipeline.sinks] == ["log", "store", "bus"]

    async def test_gates_are_kept_in_the_given_order(
        self, bus: InMemoryEventBus, store: SqliteOutcomeStore
    ) -> None:
        """Gates passed in are kept, in order, as a tuple."""
        a, b = _Gate(), _Gate()
        pipeline = build_pipeline(store=store, bus=bus, gates=[a, b])
        assert pipeline.gates == (a, b)

    def test_pipeline_is_frozen(self) -> None:
        """A Pipeline cannot be changed after it is built."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            Pipeline().sinks = ()  # type: ignore[misc]


class TestSinks:
    async def test_store_sink_records(self, store: SqliteOutcomeStore) -> None:
        """StoreSink hands the outcome to the store."""
        outcome = await LinkDownHandler().handle(make_event(interface="Gi1"))
        await StoreSink(store).emit(outcome)
        await store.flush()
        assert await store.query(OutcomeQuery()) == [outcome]

    async def test_bus_sink_subject_and_payload(self, bus: InMemoryEventBus) -> None:
        """BusSink publishes codec JSON on reflex.<handler>.<kind>.<target tokens>."""
        sub = await bus.subscribe("reflex.>")
        event = make_event("security", source="meraki.webhook", device="mx-west.example.com")
        outcome = (await SecurityWebhookHandler().handle(event)).with_kind(OutcomeKind.SUPPRESSED)
        await BusSink(bus).emit(outcome)
        msg = await sub.next(timeout=5)
        assert msg.subject == "reflex.security_webhook.suppressed.mx-west%2Eexample%2Ecom"
        assert msg.msg_id == outcome.outcome_id
        assert decode_outcome(msg.data) == outcome

    async def test_bus_sink_keeps_empty_target_parts(self, bus: InMemoryEventBus) -> None:
        """An empty part of the target still takes one subject token."""
        sub = await bus.subscribe("reflex.>")
        outcome = await LinkDownHandler().handle(make_event(interface="Gi1"))
        await BusSink(bus).emit(dataclasses.replace(outcome, target="|Gi1"))
        msg = await sub.next(timeout=5)
        assert msg.subject == "reflex.link_down.logged.%.Gi1"

    async def test_bus_sink_failure_is_counted_and_logged_after_emit(self) -> None:
        """A publish failing after emit returned is counted and logged once; flush waits for it."""
        from netcortex.config import BusConfig
        from netcortex.metrics import Registry

        closed = InMemoryEventBus(BusConfig())  # never started: publish raises BusUnavailable
        metrics = Registry()
        sink = BusSink(closed, metrics=metrics)
        outcome = await LinkDownHandler().handle(make_event(interface="Gi1"))
        with capture_logs() as logs:
            await sink.emit(outcome)
            await sink.flush()
        failures = metrics.get("netcortex_reflex_sink_failures_total")
        assert failures is not None
        assert failures.value(sink="bus") == 1  # type: ignore[union-attr]
        assert [e["event"] for e in logs] == ["outcome_publish_failed"]

    async def test_bus_sink_cancelled_publish_frees_its_window_slot(
        self, bus: InMemoryEventBus
    ) -> None:
        """A publish task cancelled before it ran still frees its slot, so emit never hangs."""
        sink = BusSink(bus, max_inflight=1)
        first = await LinkDownHandler().handle(make_event(interface="Gi1"))
        await sink.emit(first)
        for task in list(sink._inflight):  # cancelled before the loop ever runs it
            task.cancel()
        second = await LinkDownHandler().handle(make_event(interface="Gi2"))
        await asyncio.wait_for(sink.emit(second), 5)
        await sink.flush()

    async def test_bus_sink_window_bounds_inflight_publishes(self, bus: InMemoryEventBus) -> None:
        """With a window of one, every outcome is still published and flush leaves none pending."""
        sub = await bus.subscribe("reflex.>")
        sink = BusSink(bus, max_inflight=1)
        outcomes = [
            await LinkDownHandler().handle(make_event(interface=f"Gi{i}")) for i in range(20)
        ]
        for outcome in outcomes:
            await sink.emit(outcome)
        await sink.flush()
        got = [decode_outcome((await sub.next(timeout=5)).data) for _ in outcomes]
        assert sorted(o.outcome_id for o in got) == sorted(o.outcome_id for o in outcomes)

    async def test_log_sink_line(self) -> None:
        """LogSink writes one INFO outcome_recorded line naming severity, handler, kind, target."""
        outcome = await LinkDownHandler().handle(make_event(device="r1", interface="Gi1"))
        with capture_logs() as logs:
            await LogSink().emit(outcome)
        assert logs == [
            {
                "event": "outcome_recorded",
                "log_level": "info",
                "severity": "high",
                "handler_id": "link_down",
                "kind": "logged",
                "target": "r1|Gi1",
                "summary": "Link down on r1 Gi1",
                "outcome_id": outcome.outcome_id,
                "event_id": outcome.event_id,
            }
        ]
