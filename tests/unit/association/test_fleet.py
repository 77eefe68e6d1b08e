"""``FleetCorrelator`` (issue 10): one correlator for the fleet, on the lease holder.

In-process, real parts: the session nats-server (bus, lease bucket), a real SQLite
outcome store and incident store shared by two contenders (as PostgreSQL is
shared by the workers of a fleet). "Workers" are plain publishers that do what a
worker's pipeline does with an outcome: record it in the store, publish it on
``reflex.>`` with the outcome id as message id. End to end with real processes:
``tests/e2e/test_fleet_correlation.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from structlog.testing import capture_logs

from netcortex.app import Engine
from netcortex.association import Correlator
from netcortex.association import fleet as fleet_module
from netcortex.association.engine import IncidentWorker
from netcortex.association.fleet import DURABLE, FleetCorrelator, fleet_enabled, horizon
from netcortex.association.lease import JetStreamLease
from netcortex.config import AssociationConfig, BusConfig, Config, StoreConfig
from netcortex.contracts.bus import EventBus
from netcortex.contracts.codec import encode_outcome
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentQuery, IncidentState, IncidentStore
from netcortex.contracts.memory import SemanticMemory
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.errors import ConfigError, StoreError
from netcortex.memory.episodic.incidents import SqliteIncidentStore
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.metrics import Registry
from netcortex.thalamus.memory import InMemoryEventBus
from netcortex.thalamus.subjects import incident_subject, outcome_subject
from tests.servers import NatsServer
from tests.unit.association.conftest import SW1N_EDGE, SW1N_SW2, SW2N_SW1

BusFactory = Callable[..., Awaitable[Any]]

TTL = 1.5
WITHIN = 10.0


@dataclass
class Member:
    """One contender: its fleet correlator, its worker and its metrics."""

    fleet: FleetCorrelator
    worker: IncidentWorker
    metrics: Registry


@dataclass
class Fleet:
    """Shared parts of one test fleet and a factory of contenders."""

    namespace: str
    url: str
    outcomes: SqliteOutcomeStore
    incidents: SqliteIncidentStore
    publisher: EventBus
    make: Callable[..., Awaitable[Member]]
    seq: int = 0

    async def emit(
        self,
        handler: str,
        target: str,
        *,
        msg_id: str | None = "",
        oid: str | None = None,
        at: datetime | None = None,
    ) -> ReflexOutcome:
        """What a worker does with an outcome: store it, publish it on ``reflex.>``."""
        self.seq += 1
        now = at if at is not None else datetime.now(UTC)
        outcome = ReflexOutcome(
            outcome_id=oid or f"o{self.seq}-{uuid.uuid4().hex[:6]}",
            handler_id=handler,
            event_id=f"e{self.seq}",
            subject=f"reflex.{handler}.logged",
            kind=OutcomeKind.LOGGED,
            severity=Severity.HIGH if handler.endswith("down") else Severity.INFO,
            target=target,
            device=target.partition("|")[0],
            occurred_at=now,
            recorded_at=now,
        )
        await self.outcomes.record(outcome)
        await self.outcomes.flush()
        await self.publisher.publish(
            outcome_subject(handler, "logged", *target.split("|")),
            encode_outcome(outcome),
            msg_id=outcome.outcome_id if msg_id == "" else msg_id,
        )
        return outcome


async def _until(check: Callable[[], Awaitable[bool]], what: str, within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.02)


async def _leader(members: list[Member]) -> Member:
    """The one member that leads, once one does."""
    await asyncio.wait_for(
        asyncio.wait(
            [asyncio.create_task(m.fleet.wait_leading()) for m in members],
            return_when=asyncio.FIRST_COMPLETED,
        ),
        WITHIN,
    )
    leading = [m for m in members if m.fleet.leading]
    assert len(leading) == 1
    return leading[0]


@pytest.fixture
async def fleet(
    tmp_path: Path,
    bus_factory: BusFactory,
    nats_server: NatsServer,
    memory: SemanticMemory,
) -> AsyncIterator[Fleet]:
    namespace = "t" + uuid.uuid4().hex[:12]
    outcomes = SqliteOutcomeStore(StoreConfig(sqlite_path=tmp_path / "o.db", flush_interval=0.005))
    incidents = SqliteIncidentStore(tmp_path / "o.db")
    await outcomes.start()
    await incidents.start()
    publisher: EventBus = await bus_factory("nats", namespace=namespace)
    config = AssociationConfig()
    members: list[Member] = []

    async def make(name: str, store: IncidentStore | None = None) -> Member:
        metrics = Registry()
        bus: EventBus = await bus_factory("nats", namespace=namespace, metrics=metrics)
        worker = IncidentWorker(
            Correlator(memory, config),
            incidents if store is None else store,
            bus,
            subject=incident_subject,
            metrics=metrics,
        )
        lease = JetStreamLease(
            nats_url=nats_server.url, namespace=namespace, ttl=TTL, holder=name, storage="memory"
        )
        member = Member(
            FleetCorrelator(
                worker, lease, bus, outcomes, config=config, memory=memory, metrics=metrics
            ),
            worker,
            metrics,
        )
        members.append(member)
        await member.fleet.start()
        return member

    yield Fleet(namespace, nats_server.url, outcomes, incidents, publisher, make)
    for member in members:
        await member.fleet.stop()
    await incidents.close()
    await outcomes.close()


async def _stored_open(fleet: Fleet) -> list[Incident]:
    return list(await fleet.incidents.open_incidents())


async def test_two_workers_outcomes_become_one_incident(fleet: Fleet) -> None:
    """The two ends of a cable published by two different workers are one incident,
    correlated by the lease holder alone; the other member correlates nothing."""
    members = [await fleet.make("a"), await fleet.make("b")]
    leader = await _leader(members)
    other = next(m for m in members if m is not leader)
    await fleet.emit("link_down", SW1N_SW2)
    await fleet.emit("link_down", SW2N_SW1)

    async def one_with_both() -> bool:
        found = await _stored_open(fleet)
        return len(found) == 1 and set(found[0].members) == {SW1N_SW2, SW2N_SW1}

    await _until(one_with_both, "one stored incident with both ends")
    assert len(leader.worker.correlator.open_incidents()) == 1
    assert not other.worker.running
    assert other.worker.correlator.open_incidents() == []
    assert leader.metrics.get("netcortex_association_lease_changes_total") is not None


async def test_graceful_handover_replays_a_lone_fact_from_the_store(fleet: Fleet) -> None:
    """One end goes down under the first leader (a lone fact, acked); the leader stops
    (releasing the lease); the other takes over at once, replays that outcome from the
    outcome store, and the other end's down makes the cable incident with both."""
    first = await fleet.make("a")
    await _leader([first])
    second = await fleet.make("b")
    down_a = await fleet.emit("link_down", SW1N_SW2)

    async def first_holds_it() -> bool:
        return first.worker.correlator.fact_count == 1

    await _until(first_holds_it, "the first leader correlated the first end")
    released = time.monotonic()
    await first.fleet.stop()
    await asyncio.wait_for(second.fleet.wait_leading(), WITHIN)
    assert time.monotonic() - released < TTL  # not the expiry: the release
    assert second.worker.correlator.fact_count == 1
    replayed = second.metrics.get("netcortex_association_replayed_total")
    assert replayed is not None
    assert replayed.total() >= 1
    down_b = await fleet.emit("link_down", SW2N_SW1)

    async def one_with_both() -> bool:
        found = await _stored_open(fleet)
        return len(found) == 1 and set(found[0].members) == {SW1N_SW2, SW2N_SW1}

    await _until(one_with_both, "the incident of both ends after the hand-over")
    (incident,) = await _stored_open(fleet)
    assert set(incident.evidence) == {down_a.outcome_id, down_b.outcome_id}


async def test_outcome_delivered_again_after_its_recovery_is_skipped(fleet: Fleet) -> None:
    """A link-down delivered again after its link-up (a redelivery) is acked and
    skipped by id: the link stays up, no fact, counted as a duplicate."""
    member = await fleet.make("a")
    await _leader([member])
    down = await fleet.emit("link_down", SW1N_SW2)
    await fleet.emit("link_up", SW1N_SW2)
    duplicates = member.metrics.counter(
        "netcortex_association_duplicates_total",
        "Outcomes delivered again after they were correlated (acked, skipped).",
    )

    async def recovered() -> bool:
        return member.worker.pending == 0 and member.worker.correlator.fact_count == 0

    await _until(recovered, "down then up correlated")
    # the same outcome again, without its message id (so JetStream does not drop it)
    await fleet.emit("link_down", SW1N_SW2, msg_id=None, oid=down.outcome_id)

    async def skipped() -> bool:
        return duplicates.total() == 1

    await _until(skipped, "the redelivery counted as a duplicate")
    assert member.worker.correlator.fact_count == 0


async def test_invalid_message_on_reflex_is_counted_and_skipped(fleet: Fleet) -> None:
    """A message on ``reflex.>`` that is not an outcome is logged, counted and acked;
    the leader keeps correlating."""
    member = await fleet.make("a")
    await _leader([member])
    await fleet.publisher.publish("reflex.link_down.logged.x", b"not json", msg_id="bad-1")
    invalid = member.metrics.counter(
        "netcortex_association_invalid_total",
        "Messages on reflex.> that are not outcomes (logged, acked, skipped).",
    )

    async def counted() -> bool:
        return invalid.total() == 1

    await _until(counted, "the invalid message counted")
    await fleet.emit("link_down", SW1N_SW2)

    async def correlated() -> bool:
        return member.worker.correlator.fact_count == 1

    await _until(correlated, "the next outcome correlated")


def test_fleet_mode_follows_role_and_bus() -> None:
    """``auto`` is on for a worker on NATS only; ``on`` without NATS is a ConfigError
    naming ``association.fleet``; ``off`` and ``association.enabled: false`` are off."""
    nats = {"backend": "nats", "nats_url": "nats://127.0.0.1:4222"}
    worker = Config.model_validate({"engine": {"role": "worker"}, "bus": nats})
    assert fleet_enabled(worker)
    assert not fleet_enabled(Config.model_validate({"bus": nats}))  # role all
    assert fleet_enabled(Config.model_validate({"bus": nats, "association": {"fleet": "on"}}))
    assert not fleet_enabled(
        Config.model_validate(
            {"engine": {"role": "worker"}, "bus": nats, "association": {"fleet": "off"}}
        )
    )
    assert not fleet_enabled(
        Config.model_validate(
            {"engine": {"role": "worker"}, "bus": nats, "association": {"enabled": False}}
        )
    )
    with pytest.raises(ConfigError, match=r"association\.fleet"):
        fleet_enabled(Config.model_validate({"association": {"fleet": "on"}}))


def test_horizon_is_the_longest_window() -> None:
    """A new leader replays the longest association window."""
    assert horizon(AssociationConfig()) == 300.0
    assert horizon(AssociationConfig(site_window=900.0)) == 900.0


async def test_leader_steps_down_when_its_lease_is_taken_over(fleet: Fleet) -> None:
    """Another holder written over the lease (a worker that judged it lapsed): the
    leader's next renewal is refused, so it stops correlating at once and does not
    contend again while that lease is valid."""
    member = await fleet.make("a")
    await _leader([member])
    nc = await nats.connect(fleet.url)
    try:
        bucket = member.fleet.lease.bucket
        value = {"holder": "intruder", "expires": time.time() + 60, "renewed": time.time()}
        with capture_logs() as logs:
            await nc.publish(f"$KV.{bucket}.correlator", json.dumps(value).encode())
            await nc.flush()

            async def stepped_down() -> bool:
                return not member.fleet.leading

            await _until(stepped_down, "the leader stepped down", within=TTL * 2)
            await asyncio.sleep(TTL / 2)  # a few contention rounds
    finally:
        await nc.close()
    lost = [line for line in logs if line["event"] == "association_leader_lost"]
    assert [line["reason"] for line in lost] == ["lease taken over"]
    assert not member.fleet.leading
    assert not member.worker.running
    changes = member.metrics.counter(
        "netcortex_association_lease_changes_total",
        "Correlator lease changes of this worker (acquired, lost, released).",
        ("change",),
    )
    assert changes.value(change="lost") == 1
    assert changes.value(change="acquired") == 1


async def test_leader_that_cannot_renew_stops_before_the_lease_lapses(
    tmp_path: Path, bus_factory: BusFactory, memory: SemanticMemory
) -> None:
    """The NATS server goes away under the leader: renewals fail, and the leader
    stops correlating before the lease's expiry (when another worker could take over)."""
    config = AssociationConfig()
    with NatsServer(store_dir=tmp_path) as server:
        namespace = "t" + uuid.uuid4().hex[:12]
        metrics = Registry()
        bus: EventBus = await bus_factory(
            "nats", nats_url=server.url, namespace=namespace, metrics=metrics
        )
        incidents = SqliteIncidentStore(tmp_path / "o.db")
        outcomes = SqliteOutcomeStore(StoreConfig(sqlite_path=tmp_path / "o.db"))
        await outcomes.start()
        await incidents.start()
        worker = IncidentWorker(
            Correlator(memory, config), incidents, bus, subject=incident_subject, metrics=metrics
        )
        lease = JetStreamLease(
            nats_url=server.url, namespace=namespace, ttl=TTL, holder="a", storage="memory"
        )
        member = FleetCorrelator(
            worker, lease, bus, outcomes, config=config, memory=memory, metrics=metrics
        )
        try:
            await member.start()
            await asyncio.wait_for(member.wait_leading(), WITHIN)
            with capture_logs() as logs:
                server.stop()
                # the last expiry written: after it another worker may take over
                assert lease.last_seen is not None
                expires = lease.last_seen.expires

                async def stepped_down() -> bool:
                    return not member.leading

                await _until(stepped_down, "the leader stepped down", within=TTL * 2)
                assert time.time() < expires
            lost = [line for line in logs if line["event"] == "association_leader_lost"]
            assert [line["reason"] for line in lost] == ["lease expired"]
            assert not worker.running
        finally:
            await member.stop(timeout=0.5)
            await incidents.close()
            await outcomes.close()


# ---------------------------------------------------------------- review fixes (C2)


class FlakyIncidentStore:
    """A real SQLite incident store whose next ``fail`` saves raise (a store outage)."""

    def __init__(self, inner: SqliteIncidentStore, fail: int = 0) -> None:
        self.inner = inner
        self.fail = fail

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def save(self, incident: Incident) -> bool:
        if self.fail > 0:
            self.fail -= 1
            raise StoreError("database is down (injected)")
        return await self.inner.save(incident)

    async def get(self, incident_id: str) -> Incident | None:
        return await self.inner.get(incident_id)

    async def query(self, query: IncidentQuery) -> Sequence[Incident]:
        return await self.inner.query(query)

    async def open_incidents(self) -> Sequence[Incident]:
        return await self.inner.open_incidents()


def _outcome(handler: str, target: str, at: datetime, n: int) -> ReflexOutcome:
    return ReflexOutcome(
        outcome_id=f"o{n}-{handler}",
        handler_id=handler,
        event_id=f"e{n}",
        subject=f"reflex.{handler}.logged",
        kind=OutcomeKind.LOGGED,
        severity=Severity.HIGH if handler.endswith("down") else Severity.INFO,
        target=target,
        device=target.partition("|")[0],
        occurred_at=at,
        recorded_at=at,
    )


async def test_takeover_after_down_up_down_does_not_apply_history_twice(
    tmp_path: Path, memory: SemanticMemory
) -> None:
    """Cable down, up, down: the old leader saved incident I1 (resolved) and I2 (open,
    v1). The new leader restores I2 and replays the window: what I2 already holds is
    skipped, so nothing is emitted — I2 stays open at v1 in the store (not bumped and
    resolved while both links are down), I1 stays resolved, and the new leader holds
    I2 at v1. A later link-up moves I2 forward (v2)."""
    store = SqliteIncidentStore(tmp_path / "i.db")
    await store.start()
    bus = InMemoryEventBus(BusConfig())
    await bus.start()
    config = AssociationConfig()
    t0 = datetime.now(UTC) - timedelta(seconds=100)
    steps = [
        ("link_down", SW1N_SW2, 0),
        ("link_down", SW2N_SW1, 1),
        ("link_up", SW1N_SW2, 20),
        ("link_up", SW2N_SW1, 21),
        ("link_down", SW1N_SW2, 40),
        ("link_down", SW2N_SW1, 41),
    ]
    history = [_outcome(h, t, t0 + timedelta(seconds=dt), n) for n, (h, t, dt) in enumerate(steps)]
    old = Correlator(memory, config)
    for outcome in history:
        for transition in old.observe(outcome, outcome.recorded_at):
            await store.save(transition.incident)
    (i2,) = old.open_incidents()
    rows = {i.incident_id: i for i in await store.query(IncidentQuery(limit=10))}
    (i1,) = [i for i in rows.values() if i.incident_id != i2.incident_id]
    assert i1.state is IncidentState.RESOLVED
    worker = IncidentWorker(Correlator(memory, config), store, bus, subject=incident_subject)
    try:
        with capture_logs() as logs:
            await worker.start(correlator=Correlator(memory, config), replay=history)
        assert not [
            line
            for line in logs
            if line["event"].startswith("incident_")
            and line["event"] not in ("incidents_restored", "incidents_caught_up")
        ]
        (caught,) = [line for line in logs if line["event"] == "incidents_caught_up"]
        assert caught["emitted"] == 0
        stored_i2 = await store.get(i2.incident_id)
        assert stored_i2 is not None
        assert (stored_i2.state, stored_i2.version) == (IncidentState.OPEN, 1)
        stored_i1 = await store.get(i1.incident_id)
        assert stored_i1 is not None
        assert (stored_i1.state, stored_i1.version) == (i1.state, i1.version)
        assert [(i.incident_id, i.version) for i in worker.correlator.open_incidents()] == [
            (i2.incident_id, 1)
        ]
        worker.submit(_outcome("link_up", SW1N_SW2, datetime.now(UTC), 99))
        await worker.idle()
        stored_i2 = await store.get(i2.incident_id)
        assert stored_i2 is not None
        assert (stored_i2.state, stored_i2.version) == (IncidentState.OPEN, 2)
    finally:
        await worker.stop(1)
        await store.close()
        await bus.close()


async def test_failed_save_is_retried_and_marks_the_worker_failing(
    tmp_path: Path, memory: SemanticMemory
) -> None:
    """A save that fails is not lost: the worker says ``failing`` (what association.fleet
    acks on) until a retry (with back-off) got it into the store."""
    inner = SqliteIncidentStore(tmp_path / "i.db")
    store = FlakyIncidentStore(inner, fail=1)
    await store.start()
    bus = InMemoryEventBus(BusConfig())
    await bus.start()
    worker = IncidentWorker(
        Correlator(memory, AssociationConfig()), store, bus, subject=incident_subject
    )
    await worker.start()
    try:
        now = datetime.now(UTC)
        worker.submit(_outcome("link_down", SW1N_SW2, now, 1))
        worker.submit(_outcome("link_down", SW2N_SW1, now, 2))
        await worker.idle()
        assert worker.failing
        assert await inner.open_incidents() == []
        await asyncio.wait_for(worker.settled(), WITHIN)
        assert not worker.failing
        (incident,) = await inner.open_incidents()
        assert set(incident.members) == {SW1N_SW2, SW2N_SW1}
    finally:
        await worker.stop(1)
        await store.close()
        await bus.close()


async def _ack_pending(fleet: Fleet) -> int:
    nc = await nats.connect(fleet.url)
    try:
        info = await nc.jetstream().consumer_info(
            f"REFLEX_{fleet.namespace}", f"{DURABLE}_{fleet.namespace}"
        )
        return int(info.num_ack_pending or 0)
    finally:
        await nc.close()


async def test_leader_does_not_ack_while_the_save_fails(fleet: Fleet, tmp_path: Path) -> None:
    """The incident store fails the save of the cable incident: the leader holds the
    batch unacked (``association_ack_held``) while the worker retries; once saved, the
    batch is acked."""
    flaky = FlakyIncidentStore(fleet.incidents, fail=1)
    member = await fleet.make("a", flaky)
    await _leader([member])
    with capture_logs() as logs:
        await fleet.emit("link_down", SW1N_SW2)
        await fleet.emit("link_down", SW2N_SW1)

        async def failing() -> bool:
            return member.worker.failing

        await _until(failing, "the save failed")
        assert await _ack_pending(fleet) >= 1
        assert member.worker.failing  # still retrying: the check above saw the held batch

        async def saved_and_acked() -> bool:
            return len(await _stored_open(fleet)) == 1 and await _ack_pending(fleet) == 0

        await _until(saved_and_acked, "saved on retry, then acked")
    assert any(line["event"] == "association_ack_held" for line in logs)


async def test_outcome_older_than_the_last_change_of_its_member_is_skipped(
    fleet: Fleet,
) -> None:
    """A link-down recorded before the link-up already correlated (delivered late, e.g.
    by an old leader's lingering pull after ack_wait) is acked and skipped: the link
    stays up, counted as late."""
    member = await fleet.make("a")
    await _leader([member])
    up = await fleet.emit("link_up", SW1N_SW2)

    async def seen_up() -> bool:
        return await _ack_pending(fleet) == 0 and member.worker.pending == 0

    await _until(seen_up, "the link-up correlated")
    with capture_logs() as logs:
        await fleet.emit("link_down", SW1N_SW2, at=up.recorded_at - timedelta(seconds=1))
        late = member.metrics.counter(
            "netcortex_association_late_total",
            "Outcomes older than the last state change correlated for their member (skipped).",
        )

        async def counted() -> bool:
            return late.total() == 1 and await _ack_pending(fleet) == 0

        await _until(counted, "the late outcome counted and acked")
    assert member.worker.correlator.fact_count == 0
    assert any(line["event"] == "association_outcome_late" for line in logs)


async def test_unexpected_campaign_error_steps_down_and_contends_again(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception in the lease campaign (here from a renewal) is logged and
    counted; the leader steps down and the campaign goes on: it leads again."""
    member = await fleet.make("a")
    await _leader([member])
    lease = member.fleet.lease
    real_renew = lease.renew
    calls = 0

    async def broken_renew() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug (injected)")
        return await real_renew()

    monkeypatch.setattr(lease, "renew", broken_renew)
    changes = member.metrics.counter(
        "netcortex_association_lease_changes_total",
        "Correlator lease changes of this worker (acquired, lost, released).",
        ("change",),
    )
    failures = member.metrics.counter(
        "netcortex_association_campaign_failures_total",
        "Unexpected errors in the lease campaign (logged; the worker stepped down).",
    )
    with capture_logs() as logs:

        async def led_again() -> bool:
            return changes.value(change="acquired") == 2 and member.fleet.leading

        await _until(led_again, "leading again after the failure")
    assert failures.total() == 1
    assert changes.value(change="lost") == 1
    assert any(line["event"] == "association_campaign_failed" for line in logs)


async def test_stop_releases_the_lease_even_when_the_drain_fails(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stop`` releases and closes the lease even when stepping down raises, so the
    next worker takes over at once (not after the expiry)."""
    first = await fleet.make("a")
    await _leader([first])
    second = await fleet.make("b")

    async def broken_stop(timeout: float = 5.0) -> None:
        raise RuntimeError("drain bug (injected)")

    monkeypatch.setattr(first.worker, "stop", broken_stop)
    released = time.monotonic()
    await first.fleet.stop()
    await asyncio.wait_for(second.fleet.wait_leading(), WITHIN)
    assert time.monotonic() - released < TTL


async def test_truncated_replay_is_counted(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """More outcomes in the window than REPLAY_MAX: the newest are replayed and the cut
    is counted (``netcortex_association_replay_truncated_total``)."""
    monkeypatch.setattr(fleet_module, "REPLAY_MAX", 2)
    for target in (SW1N_SW2, SW2N_SW1, SW1N_EDGE):
        await fleet.emit("link_down", target)
    member = await fleet.make("a")
    await _leader([member])
    truncated = member.metrics.get("netcortex_association_replay_truncated_total")
    assert truncated is not None
    assert truncated.total() == 1
    replayed = member.metrics.get("netcortex_association_replayed_total")
    assert replayed is not None
    assert replayed.total() == 2


def test_fleet_auto_with_role_all_on_nats_warns_at_start_up(tmp_path: Path) -> None:
    """``association.fleet: auto`` with ``engine.role: all`` on NATS stays off (the
    default is unchanged) but says so at start-up: several such processes would each
    correlate only their own share."""
    base: dict[str, Any] = {
        "store": {"sqlite_path": str(tmp_path / "o.db")},
        "trap": {"enabled": False},
        "http": {"enabled": False},
        "bus": {"backend": "nats", "nats_url": "nats://127.0.0.1:4222"},
    }
    with capture_logs() as logs:
        engine = Engine(Config.model_validate(base))
    assert engine.fleet is None
    assert [line["event"] for line in logs].count("association_fleet_off") == 1
    with capture_logs() as logs:
        Engine(Config.model_validate({**base, "engine": {"role": "worker"}}))
        Engine(Config.model_validate({**base, "association": {"fleet": "off"}}))
    assert "association_fleet_off" not in [line["event"] for line in logs]


async def test_leader_past_its_deadline_hands_the_batch_back(fleet: Fleet) -> None:
    """The consumer checks ``lease.held`` before it correlates a batch: past the
    deadline (here: the held revision dropped) the batch is handed back unacked and the
    leader steps down; the next term replays the outcome from the store and skips the
    redelivery as seen (never correlated and acked by a worker without the lease)."""
    member = await fleet.make("a")
    await _leader([member])
    duplicates = member.metrics.counter(
        "netcortex_association_duplicates_total",
        "Outcomes delivered again after they were correlated (acked, skipped).",
    )
    changes = member.metrics.counter(
        "netcortex_association_lease_changes_total",
        "Correlator lease changes of this worker (acquired, lost, released).",
        ("change",),
    )
    with capture_logs() as logs:
        member.fleet.lease.forget()  # as if its deadline passed
        await fleet.emit("link_down", SW1N_SW2)

        async def back_and_skipped() -> bool:
            return (
                changes.value(change="acquired") == 2
                and duplicates.total() == 1
                and await _ack_pending(fleet) == 0
            )

        await _until(back_and_skipped, "handed back, led again, redelivery skipped")
    lost = [line["reason"] for line in logs if line["event"] == "association_leader_lost"]
    assert lost == ["lease expired"]
    assert member.worker.correlator.fact_count == 1  # from the replay


async def test_replay_never_moves_a_stored_incident_backwards(
    tmp_path: Path, memory: SemanticMemory
) -> None:
    """A link flapped and the old leader stabilised (resolved) its flapping incident.
    The member is in no open incident, so the replay takes its outcomes in full and
    rebuilds that incident open at v1 — behind the store. It is marked stale
    (``incident_replay_stale``): neither the replay's transitions nor the later
    stabilisation by the new leader's tick are emitted; the stored incident stays as
    it was."""
    store = SqliteIncidentStore(tmp_path / "i.db")
    await store.start()
    bus = InMemoryEventBus(BusConfig())
    await bus.start()
    config = AssociationConfig()
    t0 = datetime.now(UTC) - timedelta(seconds=config.flap_window + 100)
    history = [
        _outcome(
            "link_down" if n % 2 == 0 else "link_up", SW1N_EDGE, t0 + timedelta(seconds=3 * n), n
        )
        for n in range(8)
    ]
    old = Correlator(memory, config)
    for outcome in history:
        for transition in old.observe(outcome, outcome.recorded_at):
            await store.save(transition.incident)
    for transition in old.tick(t0 + timedelta(seconds=config.flap_window + 30)):
        await store.save(transition.incident)
    (flap,) = await store.query(IncidentQuery(limit=10))
    assert flap.state is IncidentState.RESOLVED
    metrics = Registry()
    worker = IncidentWorker(
        Correlator(memory, config),
        store,
        bus,
        subject=incident_subject,
        metrics=metrics,
        tick_interval=0.02,
    )
    try:
        with capture_logs() as logs:
            await worker.start(correlator=Correlator(memory, config), replay=history)

            async def ticked_away() -> bool:
                return worker.correlator.open_incidents() == []

            await _until(ticked_away, "the rebuilt incident stabilised in memory")
        assert [
            line["incident_id"] for line in logs if line["event"] == "incident_replay_stale"
        ] == [flap.incident_id]
        transitions = metrics.get("netcortex_incidents_transitions_total")
        assert transitions is None or transitions.total() == 0
        stored = await store.get(flap.incident_id)
        assert stored == flap
    finally:
        await worker.stop(1)
        await store.close()
        await bus.close()


async def test_leader_whose_incident_task_ended_acks_nothing_and_steps_down(
    fleet: Fleet,
) -> None:
    """The leader's incident task is gone (it crashed): the next batch is handed back
    uncorrelated (``association_worker_stopped``), the leader steps down and, leading
    again, correlates it from the store."""
    member = await fleet.make("a")
    await _leader([member])
    changes = member.metrics.counter(
        "netcortex_association_lease_changes_total",
        "Correlator lease changes of this worker (acquired, lost, released).",
        ("change",),
    )
    await member.worker.stop(1)  # the task ends, as after a crash
    with capture_logs() as logs:
        await fleet.emit("link_down", SW1N_SW2)

        async def back() -> bool:
            return (
                changes.value(change="acquired") == 2
                and member.worker.correlator.fact_count == 1
                and await _ack_pending(fleet) == 0
            )

        await _until(back, "stepped down, led again, the outcome correlated")
    assert any(line["event"] == "association_worker_stopped" for line in logs)
    lost = [line["reason"] for line in logs if line["event"] == "association_leader_lost"]
    assert lost == ["consumer ended"]
