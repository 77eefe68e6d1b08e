"""Unit tests for reflex.gates: enrich → maintenance → dedup through the real runner.

Everything is real: the in-memory bus, the runner, ``FileInventory`` on the shared
NetBox fixture, ``SqliteMaintenanceCalendar`` in tmp_path, ``InMemoryDedupStore``.
The issue's scenario uses ifIndex 3 (the fixture has no ifIndex 12 on sw1-north):
a linkDown from 192.0.2.11 is sw1-north GigabitEthernet1/0/3, cabled to sw2-north
GigabitEthernet1/0/3.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from netcortex.contracts.codec import decode_outcome, encode_event, encode_outcome
from netcortex.contracts.events import SensoryEvent, Severity
from netcortex.contracts.memory import DedupResult, MaintenanceWindow
from netcortex.contracts.reflex import OutcomeKind, ReflexHandler, ReflexOutcome
from netcortex.memory.episodic.dedup_memory import InMemoryDedupStore
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.memory.semantic import FileInventory
from netcortex.memory.semantic.maintenance import SqliteMaintenanceCalendar
from netcortex.metrics import Registry
from netcortex.reflex.gates import DedupGate, EnrichGate, MaintenanceGate, dedup_key
from netcortex.reflex.handlers import (
    BgpDropHandler,
    LinkDownHandler,
    LinkUpHandler,
    SecurityWebhookHandler,
)
from netcortex.reflex.pipeline import Pipeline, build_pipeline
from netcortex.reflex.registry import HandlerRegistry
from netcortex.reflex.runner import ReflexRunner
from netcortex.sensory.trap import Normalizer
from netcortex.sensory.trap.ber import VarBind
from netcortex.sensory.trap.decode import Notification
from netcortex.testing import RecordingSink, make_event
from netcortex.thalamus.memory import InMemoryEventBus

WAIT = 10.0
SW1 = "192.0.2.11"


@pytest.fixture
async def calendar(tmp_path: Path) -> AsyncIterator[SqliteMaintenanceCalendar]:
    """An empty maintenance calendar in the test's directory."""
    async with SqliteMaintenanceCalendar(tmp_path / "maintenance.db") as cal:
        yield cal


@pytest.fixture
def dedup() -> InMemoryDedupStore:
    """A fresh in-memory dedup store."""
    return InMemoryDedupStore()


def raw_link_down(**payload: Any) -> SensoryEvent:
    """A linkDown as a receiver without inventory publishes it: agent address, ifIndex=3."""
    return make_event(
        "link_down",
        device=SW1,
        interface="ifIndex=3",
        agent=SW1,
        payload={"if_index": 3, "trap_name": "linkDown", **payload},
    )


def window(scope: str, target: str, wid: str = "mw-1") -> MaintenanceWindow:
    """A one-off window of ``scope``/``target`` from an hour ago to an hour from now."""
    now = datetime.now(UTC).replace(microsecond=0)  # windows have second precision
    return MaintenanceWindow(
        id=wid,
        scope=scope,
        target=target,
        start=now - timedelta(hours=1),
        end=now + timedelta(hours=1),
        reason="test",
    )


async def run(
    bus: InMemoryEventBus,
    pipeline: Pipeline,
    handlers: Sequence[ReflexHandler],
    events: Sequence[SensoryEvent],
    expected: int,
    metrics: Registry | None = None,
) -> list[ReflexOutcome]:
    """Publish ``events`` to a runner of ``handlers``; return the first ``expected`` outcomes."""
    rec = RecordingSink()
    runner = ReflexRunner(
        HandlerRegistry(list(handlers)),
        bus,
        Pipeline(gates=pipeline.gates, sinks=(*pipeline.sinks, rec)),
        metrics,
    )
    await runner.start()
    try:
        for event in events:
            await bus.publish(event.subject, encode_event(event), msg_id=event.id)
        return await rec.wait_for(expected, WAIT)
    finally:
        await runner.stop()


def gates_only(**deps: Any) -> Pipeline:
    """The built-in gates for ``deps`` and no sinks (the test records outcomes itself)."""
    return Pipeline(gates=_gates(**deps))


def _gates(**deps: Any) -> tuple[Any, ...]:
    built: list[Any] = []
    if "memory" in deps:
        built.append(EnrichGate(deps["memory"]))
    if "calendar" in deps:
        built.append(MaintenanceGate(deps["calendar"]))
    if "dedup" in deps:
        built.append(DedupGate(deps["dedup"], deps.get("windows")))
    return tuple(built)


class TestEnrichGate:
    async def test_trap_enriched_to_inventory_names_site_role_and_cable_peer(
        self, bus: InMemoryEventBus, inventory: FileInventory
    ) -> None:
        """A raw linkDown from 192.0.2.11 ifIndex 3 becomes sw1-north Gi1/0/3 at dc-north,
        role switch, with its cable peer and the snapshot age in the trace."""
        event = raw_link_down()
        (outcome,) = await run(bus, gates_only(memory=inventory), [LinkDownHandler()], [event], 1)
        assert outcome.kind is OutcomeKind.LOGGED
        assert outcome.target == "sw1-north|GigabitEthernet1/0/3"
        assert outcome.fact_key == "link_down|sw1-north|GigabitEthernet1/0/3"
        assert outcome.device == "sw1-north"
        assert outcome.site == "dc-north"
        assert outcome.role == "switch"
        assert outcome.summary == "Link down on sw1-north GigabitEthernet1/0/3"
        trace = outcome.trace
        assert trace["decided_by"] == "handler"
        assert trace["inventory"] == "device+interface"
        assert trace["device"] == "sw1-north"
        assert trace["interface"] == "GigabitEthernet1/0/3"
        assert trace["if_index"] == 3
        assert trace["cable_peer"] == "sw2-north|GigabitEthernet1/0/3"
        assert trace["raw_target"] == f"{SW1}|ifIndex=3"
        assert isinstance(trace["snapshot_age_s"], float)
        assert 0 <= trace["snapshot_age_s"] < 60

    async def test_unknown_device_stays_raw_and_is_flagged(
        self, bus: InMemoryEventBus, inventory: FileInventory
    ) -> None:
        """An agent the inventory does not know keeps its raw target, is flagged, and still logs."""
        event = make_event(
            "link_down", device="192.0.2.99", interface="ifIndex=7", agent="192.0.2.99"
        )
        (outcome,) = await run(bus, gates_only(memory=inventory), [LinkDownHandler()], [event], 1)
        assert outcome.kind is OutcomeKind.LOGGED
        assert outcome.target == "192.0.2.99|ifIndex=7"
        assert outcome.site is None
        assert outcome.trace["inventory"] == "unknown"
        assert "device" not in outcome.trace
        assert "snapshot_age_s" in outcome.trace

    async def test_unknown_interface_keeps_device_name_and_raw_interface(
        self, inventory: FileInventory
    ) -> None:
        """A known device with an unknown ifIndex (12) is renamed; the interface stays raw."""
        event = make_event("link_down", device=SW1, interface="ifIndex=12", agent=SW1)
        trace: dict[str, Any] = {}
        enriched = await EnrichGate(inventory)(LinkDownHandler(), event, trace)
        assert isinstance(enriched, SensoryEvent)
        assert enriched.target == "sw1-north|ifIndex=12"
        assert enriched.device == "sw1-north"
        assert trace["inventory"] == "device"
        assert trace["site"] == "dc-north"
        assert "cable_peer" not in trace

    async def test_interface_found_by_payload_index_or_name(self, inventory: FileInventory) -> None:
        """Without an interface on the event, the payload's if_index or if_name finds it."""
        gate = EnrichGate(inventory)
        by_index = make_event(
            "link_down", device="sw1-north", agent=None, payload={"if_index": "3"}
        )
        by_name = make_event(
            "link_down", device="sw1-north", agent=None, payload={"if_name": "Gi1/0/3"}
        )
        for event in (by_index, by_name):
            trace: dict[str, Any] = {}
            enriched = await gate(LinkDownHandler(), event, trace)
            assert isinstance(enriched, SensoryEvent)
            assert enriched.target == "sw1-north|GigabitEthernet1/0/3"
            assert trace["cable_peer"] == "sw2-north|GigabitEthernet1/0/3"

    async def test_canonical_event_passes_unchanged(self, inventory: FileInventory) -> None:
        """An event a receiver already canonicalised is handed on as the same object."""
        event = make_event("link_down", device="sw1-north", interface="GigabitEthernet1/0/3")
        trace: dict[str, Any] = {}
        assert await EnrichGate(inventory)(LinkDownHandler(), event, trace) is event
        assert "raw_target" not in trace

    async def test_target_not_anchored_at_the_device_is_kept(
        self, inventory: FileInventory
    ) -> None:
        """A Meraki security alert's ``network|client`` target survives enrichment.

        Its device (the serial-resolved appliance) is enriched, its target is not
        rebuilt as ``device`` (which would merge every client's alerts into one fact).
        """
        event = dataclasses.replace(
            make_event("security", source="meraki.webhook", device="mx-west"),
            target="Branch West|00:00:5e:00:53:aa",
        )
        trace: dict[str, Any] = {}
        enriched = await EnrichGate(inventory)(SecurityWebhookHandler(), event, trace)
        assert isinstance(enriched, SensoryEvent)
        assert enriched.target == "Branch West|00:00:5e:00:53:aa"
        assert enriched.device == "mx-west"
        assert trace["site"] == "branch-west"
        assert "raw_target" not in trace

    async def test_bgp_event_gets_session_and_peer_device(
        self, bus: InMemoryEventBus, inventory: FileInventory
    ) -> None:
        """A BGP drop from r1-north about 203.0.113.1 records session 1 and the peer r1-south."""
        event = make_event(
            "bgp_backward_transition", device="192.0.2.1", peer="203.0.113.1", agent="192.0.2.1"
        )
        (outcome,) = await run(bus, gates_only(memory=inventory), [BgpDropHandler()], [event], 1)
        assert outcome.target == "r1-north|203.0.113.1"
        assert outcome.site == "dc-north"
        assert outcome.role == "router"
        assert outcome.trace["bgp_session"] == "r1-north -> r1-south iBGP"
        assert outcome.trace["bgp_remote_asn"] == 64500
        assert outcome.trace["peer_device"] == "r1-south"
        assert outcome.trace["inventory"] == "device"


def _trap(trap_oid: str, if_index: int | None, if_name: str | None) -> Notification:
    """A decoded v2c notification ``trap_oid`` with ifIndex (and ifName when given) varbinds."""
    varbinds: list[VarBind] = []
    if if_index is not None:
        varbinds.append(VarBind(f"1.3.6.1.2.1.2.2.1.1.{if_index}", "INTEGER", if_index))
        if if_name is not None:
            varbinds.append(
                VarBind(f"1.3.6.1.2.1.31.1.1.1.1.{if_index}", "OCTET STRING", if_name.encode())
            )
    return Notification(
        version="v2c",
        pdu_type="snmpv2_trap",
        request_id=1,
        trap_oid=trap_oid,
        uptime=1,
        varbinds=tuple(varbinds),
    )


_LINK_DOWN_OID = "1.3.6.1.6.3.1.1.5.3"


class TestReceiverAndGateAgree:
    @pytest.mark.parametrize(
        ("source", "if_index", "if_name"),
        [
            (SW1, 3, "Gi1/0/3"),  # index and name agree
            (SW1, 999, "Gi1/0/3"),  # index unknown to the inventory: the name decides
            (SW1, 999, None),  # nothing known: raw ifIndex=999 on the canonical device
            (SW1, 3, None),
            (SW1, 2, "Gi1/0/3"),  # stale ifIndex in the inventory: index and name disagree
            (SW1, 3, "gigabitethernet1/0/3"),
            ("::ffff:192.0.2.11", 3, "Gi1/0/3"),  # IPv4-mapped sender
            ("192.0.2.99", 3, "Gi1/0/3"),  # unknown sender: raw on both paths
        ],
    )
    async def test_same_fact_same_target_and_dedup_key_with_or_without_receiver_memory(
        self,
        inventory: FileInventory,
        source: str,
        if_index: int | None,
        if_name: str | None,
    ) -> None:
        """A trap canonicalised by the receiver and the same trap published raw end up, after
        the enrich gate, with one target, one interface and one dedup key."""
        note = _trap(_LINK_DOWN_OID, if_index, if_name)
        now = datetime.now(UTC)
        canonical = Normalizer(memory=inventory).normalize(note, source, now)
        raw = Normalizer().normalize(note, source, now)
        gate = EnrichGate(inventory)
        results = []
        for event in (canonical, raw):
            trace: dict[str, Any] = {}
            enriched = await gate(LinkDownHandler(), event, trace)
            assert isinstance(enriched, SensoryEvent)
            results.append(
                (
                    enriched.target,
                    enriched.device,
                    enriched.interface,
                    dedup_key("link_down", enriched),
                    trace["inventory"],
                )
            )
        assert results[0] == results[1]
        # The receiver's own canonical target is already the final one.
        assert results[0][0] == canonical.target


class TestMaintenanceGate:
    async def test_device_window_gives_shadow_suppressed_outcome(
        self,
        bus: InMemoryEventBus,
        inventory: FileInventory,
        calendar: SqliteMaintenanceCalendar,
    ) -> None:
        """Inside a sw1-north window the outcome is suppressed with the window id, and keeps
        what would have fired (the handler's severity and summary)."""
        await calendar.add(window("device", "sw1-north", "chg-42"))
        metrics = Registry()
        pipeline = gates_only(memory=inventory, calendar=calendar)
        (outcome,) = await run(bus, pipeline, [LinkDownHandler()], [raw_link_down()], 1, metrics)
        assert outcome.kind is OutcomeKind.SUPPRESSED
        assert outcome.severity is Severity.HIGH
        assert outcome.summary == "Link down on sw1-north GigabitEthernet1/0/3"
        assert outcome.diagnostic == "maintenance"
        assert outcome.site == "dc-north"
        assert outcome.trace["decided_by"] == "maintenance"
        assert outcome.trace["window_id"] == "chg-42"
        assert outcome.trace["cable_peer"] == "sw2-north|GigabitEthernet1/0/3"
        stopped = metrics.counter("netcortex_reflex_stopped_total", "", ("handler", "reason"))
        assert stopped.value(handler="link_down", reason="maintenance") == 1

    @pytest.mark.parametrize(
        ("scope", "target"),
        [
            ("site", "dc-north"),
            ("role", "switch"),
            ("interface", "sw1-north|GigabitEthernet1/0/3"),
        ],
    )
    async def test_site_role_and_interface_windows_cover_the_event(
        self,
        inventory: FileInventory,
        calendar: SqliteMaintenanceCalendar,
        scope: str,
        target: str,
    ) -> None:
        """Site and role (from enrichment) and interface windows suppress the enriched event."""
        await calendar.add(window(scope, target))
        trace: dict[str, Any] = {}
        handler = LinkDownHandler()
        event = await EnrichGate(inventory)(handler, raw_link_down(), trace)
        assert await MaintenanceGate(calendar)(handler, event, trace) is OutcomeKind.SUPPRESSED
        assert trace["window_id"] == "mw-1"

    async def test_other_targets_pass(
        self, inventory: FileInventory, calendar: SqliteMaintenanceCalendar
    ) -> None:
        """A window on another device or site lets the event through untouched."""
        await calendar.add(window("device", "sw2-north", "a"))
        await calendar.add(window("site", "dc-south", "b"))
        trace: dict[str, Any] = {}
        handler = LinkDownHandler()
        event = await EnrichGate(inventory)(handler, raw_link_down(), trace)
        assert await MaintenanceGate(calendar)(handler, event, trace) is event
        assert "window_id" not in trace

    async def test_suppression_comes_before_dedup(
        self,
        bus: InMemoryEventBus,
        inventory: FileInventory,
        calendar: SqliteMaintenanceCalendar,
        dedup: InMemoryDedupStore,
    ) -> None:
        """A suppressed event sets no dedup key: the first one after the window is logged."""
        await calendar.add(window("device", "sw1-north"))
        pipeline = gates_only(memory=inventory, calendar=calendar, dedup=dedup)
        (inside,) = await run(bus, pipeline, [LinkDownHandler()], [raw_link_down()], 1)
        assert inside.kind is OutcomeKind.SUPPRESSED
        assert "dedup_key" not in inside.trace
        assert await calendar.remove("mw-1")
        (after,) = await run(bus, pipeline, [LinkDownHandler()], [raw_link_down()], 1)
        assert after.kind is OutcomeKind.LOGGED
        assert after.trace["corroboration"] == 1


class TestDedupGate:
    async def test_storm_of_10000_link_downs_is_one_logged_and_9999_skipped(
        self, bus: InMemoryEventBus, inventory: FileInventory, dedup: InMemoryDedupStore
    ) -> None:
        """10,000 identical linkDowns through the runner: exactly 1 logged and 9,999 skipped,
        each skipped one counting corroboration and naming the first event."""
        events = [raw_link_down() for _ in range(10_000)]
        metrics = Registry()
        pipeline = gates_only(memory=inventory, dedup=dedup)
        outcomes = await run(bus, pipeline, [LinkDownHandler()], events, 10_000, metrics)
        logged = [o for o in outcomes if o.kind is OutcomeKind.LOGGED]
        skipped = [o for o in outcomes if o.kind is OutcomeKind.SKIPPED]
        assert len(logged) == 1
        assert len(skipped) == 9_999
        first = events[0].id
        assert logged[0].event_id == first
        assert logged[0].trace["corroboration"] == 1
        assert sorted(o.trace["corroboration"] for o in skipped) == list(range(2, 10_001))
        assert {o.trace["first_event_id"] for o in skipped} == {first}
        assert {o.trace["dedup_key"] for o in outcomes} == {
            "link_down|link_down|sw1-north|GigabitEthernet1/0/3"
        }
        assert {o.trace["decided_by"] for o in skipped} == {"dedup"}
        assert {o.severity for o in skipped} == {Severity.HIGH}
        assert all(o.site == "dc-north" for o in skipped)
        stopped = metrics.counter("netcortex_reflex_stopped_total", "", ("handler", "reason"))
        assert stopped.value(handler="link_down", reason="dedup") == 9_999
        gate_seconds = metrics.histogram("netcortex_reflex_gate_seconds", "", ("gate",))
        assert gate_seconds.count(gate="dedup") == 10_000
        assert gate_seconds.count(gate="enrich") == 10_000

    async def test_window_override_zero_disables_dedup(
        self, bus: InMemoryEventBus, dedup: InMemoryDedupStore
    ) -> None:
        """A per-handler window of 0 lets every repeat through as logged, with no dedup trace."""
        pipeline = gates_only(dedup=dedup, windows={"link_down": 0})
        events = [raw_link_down() for _ in range(3)]
        outcomes = await run(bus, pipeline, [LinkDownHandler()], events, 3)
        assert [o.kind for o in outcomes] == [OutcomeKind.LOGGED] * 3
        assert all("dedup_key" not in o.trace for o in outcomes)

    async def test_window_override_is_used(self, dedup: InMemoryDedupStore) -> None:
        """A configured window replaces the handler's own in the store call and the trace."""
        gate = DedupGate(dedup, {"link_down": 5.0})
        trace: dict[str, Any] = {}
        assert isinstance(await gate(LinkDownHandler(), raw_link_down(), trace), SensoryEvent)
        assert trace["dedup_window_s"] == 5.0

    async def test_redelivered_first_event_passes_again(self, dedup: InMemoryDedupStore) -> None:
        """The fact's first event, delivered again, is not turned into a skipped duplicate."""
        gate = DedupGate(dedup)
        event = raw_link_down()
        assert await gate(LinkDownHandler(), event, {}) is event
        trace: dict[str, Any] = {}
        assert await gate(LinkDownHandler(), event, trace) is event
        assert trace["first_event_id"] == event.id
        assert trace["corroboration"] == 2

    async def test_keys_are_scoped_by_handler(self, dedup: InMemoryDedupStore) -> None:
        """Two handlers consuming the same fact each see their own first event."""

        class SecondLinkDown(LinkDownHandler):
            id = "link_down_pager"

        gate = DedupGate(dedup)
        event = raw_link_down()
        assert await gate(LinkDownHandler(), event, {}) is event
        assert await gate(SecondLinkDown(), raw_link_down(), {}) is not OutcomeKind.SKIPPED
        assert dedup_key("link_down", event) != dedup_key("link_down_pager", event)

    async def test_other_targets_and_classes_are_separate_facts(
        self, dedup: InMemoryDedupStore
    ) -> None:
        """A different interface, or link_up on the same one, is a new fact."""
        gate = DedupGate(dedup)
        await gate(LinkDownHandler(), make_event("link_down", interface="Gi1"), {})
        other = make_event("link_down", interface="Gi2")
        assert await gate(LinkDownHandler(), other, {}) is other
        up = make_event("link_up", interface="Gi1")
        assert await gate(LinkUpHandler(), up, {}) is up

    @pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
    def test_invalid_window_refused(self, dedup: InMemoryDedupStore, bad: float) -> None:
        """A negative or non-finite configured window is refused at construction."""
        with pytest.raises(ValueError, match="link_down"):
            DedupGate(dedup, {"link_down": bad})


class BrokenDedupStore:
    """A dedup store whose backend is down (raises on every ``seen``)."""

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""

    async def seen(self, key: str, window: float, event_id: str) -> DedupResult:
        raise RuntimeError("dedup backend down")


class ExplodingHandler(LinkDownHandler):
    """A link-down handler that raises."""

    id = "exploding"

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        raise ValueError("boom")


class TestTrace:
    async def test_errored_outcomes_name_the_failing_stage(
        self, bus: InMemoryEventBus, inventory: FileInventory
    ) -> None:
        """A raising gate is named in decided_by; a raising handler gives decided_by handler,
        and both keep the enrichment already traced."""
        broken = Pipeline(gates=(EnrichGate(inventory), DedupGate(BrokenDedupStore())))
        (gate_failed,) = await run(bus, broken, [LinkDownHandler()], [raw_link_down()], 1)
        assert gate_failed.kind is OutcomeKind.ERRORED
        assert gate_failed.trace["decided_by"] == "dedup"
        assert gate_failed.site == "dc-north"
        assert "dedup backend down" in gate_failed.diagnostic
        (handler_failed,) = await run(
            bus, gates_only(memory=inventory), [ExplodingHandler()], [raw_link_down()], 1
        )
        assert handler_failed.kind is OutcomeKind.ERRORED
        assert handler_failed.trace["decided_by"] == "handler"
        assert handler_failed.trace["cable_peer"] == "sw2-north|GigabitEthernet1/0/3"

    async def test_no_gates_still_traces_the_decider(self, bus: InMemoryEventBus) -> None:
        """Without gates every outcome still says the handler decided (old callers)."""
        (outcome,) = await run(bus, Pipeline(), [LinkDownHandler()], [raw_link_down()], 1)
        assert dict(outcome.trace) == {"decided_by": "handler"}
        assert outcome.role is None

    async def test_trace_is_read_only_and_survives_codec_and_store(
        self,
        bus: InMemoryEventBus,
        store: SqliteOutcomeStore,
        inventory: FileInventory,
        calendar: SqliteMaintenanceCalendar,
        dedup: InMemoryDedupStore,
    ) -> None:
        """Logged, suppressed and skipped outcomes from build_pipeline keep trace and role
        through the JSON codec and the SQLite store."""
        pipeline = build_pipeline(
            store=store, bus=bus, memory=inventory, calendar=calendar, dedup=dedup
        )
        await calendar.add(window("interface", "r1-north|GigabitEthernet0/0/1", "mw-r1"))
        suppressed_event = make_event(
            "link_down", device="192.0.2.1", agent="192.0.2.1", payload={"if_index": 2}
        )
        events = [raw_link_down(), raw_link_down(), suppressed_event]
        outcomes = await run(bus, pipeline, [LinkDownHandler()], events, 3)
        kinds = {o.kind: o for o in outcomes}
        assert set(kinds) == {OutcomeKind.LOGGED, OutcomeKind.SKIPPED, OutcomeKind.SUPPRESSED}
        assert kinds[OutcomeKind.SUPPRESSED].trace["window_id"] == "mw-r1"
        assert kinds[OutcomeKind.SUPPRESSED].trace["cable_peer"] == "sw1-north|GigabitEthernet1/0/1"
        await store.flush()
        for outcome in outcomes:
            with pytest.raises(TypeError):
                outcome.trace["decided_by"] = "x"  # type: ignore[index]
            assert decode_outcome(encode_outcome(outcome)) == outcome
            stored = await store.get(outcome.outcome_id)
            assert stored is not None
            assert dict(stored.trace) == dict(outcome.trace)
            assert (
                stored.role == outcome.role == ("switch" if "sw1" in outcome.target else "router")
            )


class TestBuildPipelineGates:
    async def test_gates_included_only_with_their_dependency_in_order(
        self,
        bus: InMemoryEventBus,
        store: SqliteOutcomeStore,
        inventory: FileInventory,
        calendar: SqliteMaintenanceCalendar,
        dedup: InMemoryDedupStore,
    ) -> None:
        """Only gates whose dependency is given are built: enrich → maintenance → dedup → extras."""

        class Extra:
            name = "extra"

            async def __call__(
                self, handler: ReflexHandler, event: SensoryEvent, trace: dict[str, Any]
            ) -> SensoryEvent:
                return event

        extra = Extra()
        assert build_pipeline(store=store, bus=bus).gates == ()
        full = build_pipeline(
            store=store, bus=bus, memory=inventory, calendar=calendar, dedup=dedup, gates=[extra]
        )
        assert [g.name for g in full.gates] == ["enrich", "maintenance", "dedup", "extra"]
        only_dedup = build_pipeline(store=store, bus=bus, dedup=dedup, dedup_windows={"x": 1.0})
        assert [type(g) for g in only_dedup.gates] == [DedupGate]
        only_calendar = build_pipeline(store=store, bus=bus, calendar=calendar)
        assert [g.name for g in only_calendar.gates] == ["maintenance"]
