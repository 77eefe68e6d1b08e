"""Unit: the stream hub's pieces — resume ids, filters, bounded client queues, fan-out —
and the status sampler's rates (issue 9)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from netcortex.bridge.http.hub import (
    HubFull,
    Position,
    StreamFilter,
    StreamHub,
    decode_position,
    encode_position,
    incident_item,
    outcome_item,
)
from netcortex.bridge.http.status import StatusSampler
from netcortex.config import BusConfig
from netcortex.contracts.codec import encode_incident, encode_outcome
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.metrics import Registry
from netcortex.thalamus.memory import InMemoryEventBus
from netcortex.thalamus.subjects import incident_subject, outcome_subject

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def outcome(
    n: int, *, device: str = "sw1-north", site: str = "dc-north", severity: str = "high"
) -> ReflexOutcome:
    return ReflexOutcome(
        outcome_id=f"o{n:04d}",
        handler_id="link_down",
        event_id=f"e{n}",
        subject="sensory.snmp.trap.link_down.x",
        kind=OutcomeKind.LOGGED,
        severity=Severity(severity),
        target=f"{device}|Gi1/0/{n}",
        device=device,
        site=site,
        summary=f"link {n} down",
        recorded_at=T0 + timedelta(seconds=n),
    )


def incident(version: int = 1, state: IncidentState = IncidentState.OPEN) -> Incident:
    return Incident(
        incident_id="inc1",
        rule="cable_pair",
        root="cable:sw1-north|Gi1/0/3~sw2-north|Gi1/0/3",
        state=state,
        severity=Severity.HIGH,
        summary="cable cut",
        members=("sw1-north|Gi1/0/3", "sw2-north|Gi1/0/3"),
        evidence=("o0001",),
        opened_at=T0,
        updated_at=T0 + timedelta(seconds=version),
        site="dc-north",
        version=version,
    )


def item_of(o: ReflexOutcome) -> object:
    subject = outcome_subject(o.handler_id, o.kind.value, *o.target.split("|"))
    return outcome_item(subject, o)


# ------------------------------------------------------------------ positions


def test_position_round_trips_to_the_microsecond() -> None:
    pos = Position((T0 + timedelta(microseconds=7), "o1"), (T0, "inc1"))
    assert decode_position(encode_position(pos)) == pos
    empty = Position()
    assert decode_position(encode_position(empty)) == empty


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x" * 5000,
        "not base64 !!",
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        base64.urlsafe_b64encode(json.dumps([2, 1, "a", 1, "b"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, "1", "a", None, None]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, 10**20, "a", None, None]).encode()).decode(),
    ],
)
def test_malformed_ids_are_refused(token: str) -> None:
    with pytest.raises(ValueError, match="stream id"):
        decode_position(token)


def test_position_only_moves_forward() -> None:
    later, earlier = item_of(outcome(5)), item_of(outcome(2))
    pos = Position().advance(later)  # type: ignore[arg-type]
    assert pos.advance(earlier) == pos  # type: ignore[arg-type]
    inc = incident_item("opened", incident())
    assert pos.advance(inc).incident == (incident().updated_at, "inc1")


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"severity": "loud"}, "severity"),
        ({"subjects": ["sensory.>"]}, "subject"),
        ({"subjects": ["reflex..x"]}, "subject"),
        ({"device": " "}, "device"),
        ({"site": ""}, "site"),
    ],
)
def test_bad_filter_values_name_their_parameter(kwargs: dict[str, object], param: str) -> None:
    with pytest.raises(ValueError, match=f"^{param}: "):
        StreamFilter.parse(**kwargs)  # type: ignore[arg-type]


def test_filters_combine_with_and() -> None:
    high_north = outcome_item(
        "reflex.link_down.logged.sw1-north.Gi1%2F0%2F1", outcome(1, severity="high")
    )
    info_south = outcome_item(
        "reflex.link_up.logged.r1-south.Gi1%2F0%2F2",
        outcome(2, device="r1-south", site="dc-south", severity="info"),
    )
    opened = incident_item("opened", incident())
    assert StreamFilter.parse().accepts(high_north)
    assert StreamFilter.parse().accepts(opened)
    assert not StreamFilter.parse(severity="critical").accepts(high_north)
    assert StreamFilter.parse(severity="warn").accepts(high_north)
    assert not StreamFilter.parse(severity="warn").accepts(info_south)
    assert StreamFilter.parse(site="dc-south").accepts(info_south)
    assert not StreamFilter.parse(site="dc-south").accepts(opened)
    assert StreamFilter.parse(device="sw2-north").accepts(opened)  # a member's device
    assert not StreamFilter.parse(device="sw2-north").accepts(high_north)
    only_incidents = StreamFilter.parse(["incident.opened.*"])
    assert only_incidents.accepts(opened)
    assert not only_incidents.accepts(high_north)
    assert not only_incidents.accepts(incident_item("updated", incident(2)))
    both = StreamFilter.parse(["reflex.link_up.>"], site="dc-south", severity="info")
    assert both.accepts(info_south)
    assert not both.accepts(high_north)


def test_a_resumed_incident_matches_its_implied_transition() -> None:
    new = incident_item("resumed", incident(1))
    changed = incident_item("resumed", incident(3))
    resolved = incident_item("resumed", incident(4, IncidentState.RESOLVED))
    assert new.subject == incident_subject("resumed", "inc1")
    assert StreamFilter.parse(["incident.opened.*"]).accepts(new)
    assert not StreamFilter.parse(["incident.opened.*"]).accepts(changed)
    assert StreamFilter.parse(["incident.updated.*"]).accepts(changed)
    assert StreamFilter.parse(["incident.resolved.>"]).accepts(resolved)


# ------------------------------------------------------------------ clients and the hub


async def test_a_full_queue_overflows_and_drops_everything_after() -> None:
    metrics = Registry()
    hub = StreamHub(InMemoryEventBus(BusConfig()), metrics, queue_size=2, max_clients=2)
    slow = hub.connect(StreamFilter.parse())
    fast = hub.connect(StreamFilter.parse())
    with pytest.raises(HubFull):
        hub.connect(StreamFilter.parse())
    for n in range(1, 4):
        hub.publish(item_of(outcome(n)))  # type: ignore[arg-type]
        got = await fast.get(0.1)
        assert got is not None
        assert got.ident == f"o{n:04d}"
    assert slow.overflowed
    assert slow.dropped == 1
    assert await slow.get(0.01) is None  # nothing more: the route sends overflow, closes
    hub.publish(item_of(outcome(4)))  # type: ignore[arg-type]
    assert slow.dropped == 2
    assert not fast.overflowed
    overflows = metrics.get("netcortex_stream_overflows_total")
    assert overflows is not None
    assert overflows.total() == 1  # type: ignore[union-attr]
    slow.close()
    assert hub.clients == 1
    fast.close()
    assert hub.clients == 0


async def test_get_times_out_and_close_wakes_a_reader() -> None:
    hub = StreamHub(InMemoryEventBus(BusConfig()), Registry())
    client = hub.connect(StreamFilter.parse())
    assert await client.get(0.01) is None
    assert not client.closed
    client.close()
    assert await client.get(10) is None
    assert client.closed


async def test_the_hub_fans_out_bus_messages_decoded_once() -> None:
    bus = InMemoryEventBus(BusConfig())
    await bus.start()
    hub = StreamHub(bus, Registry())
    await hub.start()
    try:
        everything = hub.connect(StreamFilter.parse())
        incidents = hub.connect(StreamFilter.parse(["incident.>"]))
        o = outcome(1)
        subject = outcome_subject(o.handler_id, o.kind.value, *o.target.split("|"))
        await bus.publish(subject, encode_outcome(o))
        await bus.publish("reflex.link_down.logged.x", b"not json")  # skipped, not fatal
        await bus.publish(incident_subject("opened", "inc1"), encode_incident(incident()))
        first = await everything.get(5)
        assert first is not None
        assert first.kind == "outcome"
        assert json.loads(first.data) == {
            "subject": subject,
            "outcome": json.loads(encode_outcome(o)),
        }
        second = await everything.get(5)
        assert second is not None
        assert second.kind == "incident"
        body = json.loads(second.data)
        assert body["transition"] == "opened"
        assert body["incident"]["incident_id"] == "inc1"
        only = await incidents.get(5)
        assert only is not None
        assert only.kind == "incident"
    finally:
        await hub.close()
        await bus.close()
    assert everything.closed
    assert not hub.running


# ------------------------------------------------------------------ status sampler


def test_sampler_rates_cover_the_last_window() -> None:
    now = [100.0]
    metrics = Registry()
    received = metrics.counter("netcortex_received_total", "x", ["source"])
    rejected = metrics.counter("netcortex_rejected_total", "x", ["source", "reason"])
    outcomes = metrics.counter("netcortex_reflex_outcomes_total", "x", ["handler_id"])
    sampler = StatusSampler(metrics, window=60, clock=lambda: now[0])
    sampler.sample()
    received.inc(30, source="snmp.trap")
    rejected.inc(6, source="snmp.trap", reason="bad_community")
    outcomes.inc(12, handler_id="link_down")
    now[0] = 130.0
    sampler.sample()
    (trap,) = sampler.sources(expected=["snmp.trap"])
    assert trap.source == "trap"
    assert (trap.received, trap.rejected) == (30, 6)
    assert trap.rejected_by_reason == {"bad_community": 6}
    assert trap.received_per_s == 1.0
    assert trap.rejected_per_s == 0.2
    assert sampler.outcomes() == (12, 0.4)
    # 100 s later with nothing new: the rate falls to zero (old samples leave the window)
    now[0] = 200.0
    sampler.sample()
    now[0] = 230.0
    sampler.sample()
    assert sampler.sources()[0].received_per_s == 0.0
    polls = sampler.sources(expected=["snmp.poll"])
    assert [s.source for s in polls] == ["poll", "trap"]
    assert polls[0].received == 0
