"""PollReceiver against a real net-snmp ``snmpd`` (its IF-MIB is this host's interfaces).

What a real agent cannot be made to do here (change an interface's state) is
covered by seeding the durable state instead: a stored snapshot that differs
from the agent is exactly "it changed while netcortex was down", reported on
the first poll after start. Dead devices are UDP ports nobody listens on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from netcortex.config import BusConfig, Config, PollConfig, PollTargetConfig, V3User
from netcortex.contracts.bus import Subscription
from netcortex.contracts.codec import decode_event
from netcortex.contracts.events import SensoryEvent
from netcortex.errors import StoreError
from netcortex.memory.semantic import FileInventory
from netcortex.metrics import Counter, Histogram, Registry
from netcortex.sensory.poll.diff import (
    IF_STATUS_DOWN,
    IF_STATUS_UP,
    BgpPeerState,
    DeviceSnapshot,
)
from netcortex.sensory.poll.scheduler import PollReceiver
from netcortex.sensory.poll.snmp import PollTarget, SnmpClient
from netcortex.sensory.poll.state import SqlitePollState
from netcortex.sensory.poll.state_postgres import PostgresPollState
from netcortex.sensory.trap.ber import VarBind
from netcortex.thalamus.memory import InMemoryEventBus
from tests.servers import (
    AgentBgpPeer,
    ScriptedSnmpAgent,
    SnmpdServer,
    SnmpdUser,
    free_udp_port,
    snmpd_binary,
)

HOST = "127.0.0.1"


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryEventBus]:
    b = InMemoryEventBus(BusConfig())
    await b.start()
    yield b
    await b.close()


@pytest.fixture
async def events(bus: InMemoryEventBus) -> AsyncIterator[Subscription]:
    sub = await bus.subscribe("sensory.snmp.poll.>")
    yield sub
    await sub.close()


def poll_config(tmp_path: Path, *targets: PollTargetConfig, **kw: Any) -> PollConfig:
    args: dict[str, Any] = {
        "enabled": True,
        "interval_seconds": 0.2,
        "jitter": 0.1,
        "timeout_seconds": 0.5,
        "retries": 0,
        "failure_threshold": 3,
        "state_path": tmp_path / "poll_state.db",
        "targets": list(targets),
    }
    args.update(kw)
    return PollConfig(**args)


def live(snmpd: SnmpdServer, device: str = "lab-agent") -> PollTargetConfig:
    return PollTargetConfig(
        device=device, host=snmpd.host, port=snmpd.port, community=SecretStr(snmpd.community)
    )


#: Bound UDP sockets nobody reads: a "dead" agent's port stays ours for the whole
#: module, so no snmpd started by a parallel test can take it and answer.
_BLACK_HOLES: list[socket.socket] = []


@pytest.fixture(scope="module", autouse=True)
def _close_black_holes() -> Iterator[None]:
    yield
    while _BLACK_HOLES:
        _BLACK_HOLES.pop().close()


def dead(device: str = "dead-agent") -> PollTargetConfig:
    """A target whose port is bound (so the kernel sends no ICMP) and never answers."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind((HOST, 0))
    _BLACK_HOLES.append(hole)
    return PollTargetConfig(device=device, host=HOST, port=hole.getsockname()[1])


async def eventually(cond: Callable[[], bool], within: float = 10.0) -> None:
    """Return once ``cond()`` holds; ``TimeoutError`` after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110 - a bounded poll of a plain counter
            await asyncio.sleep(0.01)


async def next_event(sub: Subscription, within: float = 10.0) -> SensoryEvent:
    msg = await sub.next(timeout=within)
    await msg.ack()
    return decode_event(msg.data)


async def assert_no_event(sub: Subscription, within: float = 0.3) -> None:
    try:
        event = await next_event(sub, within)
    except TimeoutError:
        return
    pytest.fail(f"unexpected event {event.event_class} {event.target}")


def polls(metrics: Registry) -> int:
    c = metrics.get("netcortex_received_total")
    return int(c.value(source="snmp.poll")) if isinstance(c, Counter) else 0


def failures(metrics: Registry) -> int:
    c = metrics.get("netcortex_poll_failures_total")
    return int(c.total()) if isinstance(c, Counter) else 0


async def stored(path: Path) -> tuple[dict[str, DeviceSnapshot], frozenset[str]]:
    state = SqlitePollState(path)
    await state.start()
    try:
        return await state.load_all(), await state.load_down()
    finally:
        await state.close()


async def baseline(tmp_path: Path, snmpd: SnmpdServer, bus: InMemoryEventBus) -> DeviceSnapshot:
    """Poll ``snmpd`` once (as ``lab-agent``) and return the stored snapshot."""
    config = poll_config(tmp_path, live(snmpd))
    metrics = Registry()
    async with PollReceiver(config, bus, metrics):
        await eventually(lambda: polls(metrics) >= 1)
    snapshots, _ = await stored(config.state_path)
    return snapshots["lab-agent"]


class TestBaseline:
    async def test_polls_the_real_agent_and_reports_nothing(
        self, tmp_path: Path, snmpd: SnmpdServer, bus: InMemoryEventBus, events: Subscription
    ) -> None:
        """Repeated polls of an unchanged agent: no event; the state holds its interfaces."""
        config = poll_config(tmp_path, live(snmpd))
        metrics = Registry()
        receiver = PollReceiver(config, bus, metrics)
        async with receiver:
            _, port = receiver.bound_address
            assert port > 0
            assert receiver.targets == ("lab-agent",)
            await eventually(lambda: polls(metrics) >= 3)
            await assert_no_event(events, 0.1)
        assert failures(metrics) == 0
        duration = metrics.get("netcortex_poll_duration_seconds")
        assert isinstance(duration, Histogram)
        assert duration.count() >= 3
        snapshots, down = await stored(config.state_path)
        assert down == frozenset()
        snap = snapshots["lab-agent"]
        assert snap.agent == snmpd.host
        assert snap.sys_uptime_ticks > 0
        assert snap.bgp == {}  # snmpd has no BGP4-MIB: tolerated
        names = {i.name for i in snap.interfaces.values()}
        assert "lo" in names  # ifName from ifXTable
        lo = next(i for i in snap.interfaces.values() if i.name == "lo")
        assert lo.descr  # ifDescr
        assert lo.admin_status == IF_STATUS_UP
        assert lo.oper_status == IF_STATUS_UP
        assert lo.last_change is not None

    async def test_bgp_off_and_no_targets(self, tmp_path: Path, bus: InMemoryEventBus) -> None:
        """No targets: starts, polls nothing, closes; not restartable."""
        receiver = PollReceiver(poll_config(tmp_path, bgp=False), bus)
        await receiver.start()
        assert receiver.targets == ()
        await receiver.close()
        await receiver.close()
        with pytest.raises(RuntimeError):
            await receiver.start()
        with pytest.raises(RuntimeError):
            _ = receiver.bound_address


class TestRestart:
    async def test_change_while_down_is_reported_once(
        self, tmp_path: Path, snmpd: SnmpdServer, bus: InMemoryEventBus, events: Subscription
    ) -> None:
        """A stored state where lo was down and sysUpTime higher: the first poll after
        start reports device_reboot and link_up; the next start reports nothing."""
        snap = await baseline(tmp_path, snmpd, bus)
        lo = next(i for i in snap.interfaces.values() if i.name == "lo")
        seeded = dataclasses.replace(
            snap,
            sys_uptime_ticks=snap.sys_uptime_ticks + 100_000_000,
            interfaces={
                **snap.interfaces,
                lo.if_index: dataclasses.replace(lo, oper_status=IF_STATUS_DOWN),
            },
        )
        state = SqlitePollState(tmp_path / "poll_state.db")
        await state.start()
        await state.save(seeded)
        await state.close()

        config = poll_config(tmp_path, live(snmpd))
        metrics = Registry()
        async with PollReceiver(config, bus, metrics):
            reboot = await next_event(events)
            link = await next_event(events)
            await eventually(lambda: polls(metrics) >= 2)
            await assert_no_event(events, 0.1)
        assert reboot.event_class == "device_reboot"
        assert reboot.subject.startswith("sensory.snmp.poll.device_reboot.")
        assert reboot.device == snmpd.host
        assert link.event_class == "link_up"
        assert link.source == "snmp.poll"
        assert link.target == f"{snmpd.host}|lo"
        assert link.payload["if_prev_oper_status"] == IF_STATUS_DOWN
        assert link.payload["admin_down"] is False
        published = metrics.get("netcortex_poll_published_total")
        assert isinstance(published, Counter)
        assert published.by_label("event_class") == {"device_reboot": 1, "link_up": 1}

        # The state now holds what was reported: another restart is quiet.
        async with PollReceiver(config, bus, Registry()) as again:
            await eventually(lambda: polls(again.metrics) >= 2)
            await assert_no_event(events, 0.1)

    async def test_stored_down_device_that_answers_is_device_up(
        self, tmp_path: Path, snmpd: SnmpdServer, bus: InMemoryEventBus, events: Subscription
    ) -> None:
        """Down when netcortex stopped, answering now: one device_up, flag cleared."""
        config = poll_config(tmp_path, live(snmpd))
        state = SqlitePollState(config.state_path)
        await state.start()
        await state.set_down("lab-agent", True)
        await state.close()
        metrics = Registry()
        async with PollReceiver(config, bus, metrics):
            up = await next_event(events)
            await eventually(lambda: polls(metrics) >= 2)
            await assert_no_event(events, 0.1)
        assert up.event_class == "device_up"
        assert up.payload["poll_device"] == "lab-agent"
        _, down = await stored(config.state_path)
        assert down == frozenset()


class TestInjectedState:
    async def test_postgres_state_reports_a_change_while_down_once(
        self,
        tmp_path: Path,
        snmpd: SnmpdServer,
        bus: InMemoryEventBus,
        events: Subscription,
        postgres_dsn: str,
        postgres_schema: str,
    ) -> None:
        """With a PostgresPollState passed in: the receiver starts and closes it, stores
        its polls there (no SQLite file), reports a change seeded there once, and a
        restart on the same schema reports nothing."""

        def pg() -> PostgresPollState:
            return PostgresPollState(postgres_dsn, postgres_schema)

        config = poll_config(tmp_path, live(snmpd))
        metrics = Registry()
        state = pg()
        with capture_logs() as logs:
            async with PollReceiver(config, bus, metrics, state=state):
                await eventually(lambda: polls(metrics) >= 2)
                await assert_no_event(events, 0.1)  # the first poll is the baseline
        assert [e["backend"] for e in logs if e["event"] == "poll_state_opened"] == ["postgres"]
        assert not config.state_path.exists()
        with pytest.raises(StoreError, match="closed"):
            await state.load_all()

        seeder = pg()
        await seeder.start()
        snap = (await seeder.load_all())["lab-agent"]
        lo = next(i for i in snap.interfaces.values() if i.name == "lo")
        seeded = dataclasses.replace(
            snap,
            interfaces={
                **snap.interfaces,
                lo.if_index: dataclasses.replace(lo, oper_status=IF_STATUS_DOWN),
            },
        )
        await seeder.save(seeded)
        await seeder.close()

        metrics = Registry()
        async with PollReceiver(config, bus, metrics, state=pg()):
            link = await next_event(events)
            await eventually(lambda: polls(metrics) >= 2)
            await assert_no_event(events, 0.1)
        assert (link.event_class, link.target) == ("link_up", f"{snmpd.host}|lo")

        async with PollReceiver(config, bus, Registry(), state=pg()) as again:
            await eventually(lambda: polls(again.metrics) >= 2)
            await assert_no_event(events, 0.1)


class TestFailures:
    async def test_dead_device_is_down_once_and_never_up(
        self, tmp_path: Path, bus: InMemoryEventBus, events: Subscription
    ) -> None:
        """Nobody answers: device_down after the threshold, nothing more while it stays
        down (no device_up, no second device_down); the flag is stored; poll_failed is
        rate-limited to one line; the community shows nowhere."""
        community = "dead-s3cret-community"
        target = dead().model_copy(update={"community": SecretStr(community)})
        config = poll_config(
            tmp_path, target, interval_seconds=0.1, timeout_seconds=0.05, failure_threshold=3
        )
        metrics = Registry()
        with capture_logs() as logs:
            async with PollReceiver(config, bus, metrics):
                down = await next_event(events)
                await eventually(lambda: failures(metrics) >= 7)
                await assert_no_event(events, 0.05)
        assert down.event_class == "device_down"
        assert down.subject.startswith("sensory.snmp.poll.device_down.")
        assert down.device == HOST
        assert down.payload["consecutive_failures"] == 3
        assert down.payload["reason"] == "timeout"
        assert down.payload["poll_device"] == "dead-agent"
        counter = metrics.get("netcortex_poll_failures_total")
        assert isinstance(counter, Counter)
        assert set(counter.by_label("reason")) == {"timeout"}
        assert polls(metrics) == 0
        _, stored_down = await stored(config.state_path)
        assert stored_down == frozenset({"dead-agent"})
        names = [e["event"] for e in logs]
        assert names.count("poll_failed") == 1
        assert names.count("poll_device_down") == 1
        assert "poll_device_up" not in names
        assert community not in repr(logs)
        assert community not in repr(down)

    async def test_a_dead_device_does_not_delay_a_live_one(
        self, tmp_path: Path, snmpd: SnmpdServer, bus: InMemoryEventBus
    ) -> None:
        """While one request to a dead device waits out its 5 s timeout, the live
        device is polled again and again (and close does not wait for the dead one)."""
        config = poll_config(
            tmp_path, dead(), live(snmpd), interval_seconds=0.1, timeout_seconds=5.0
        )
        metrics = Registry()
        t0 = time.monotonic()
        async with PollReceiver(config, bus, metrics):
            await eventually(lambda: polls(metrics) >= 5, within=4.0)
            assert failures(metrics) == 0
        assert time.monotonic() - t0 < 5.0


class CountingClient(SnmpClient):
    """An ``SnmpClient`` that records how many sysUpTime GETs (one per device poll,
    the first request of each) are in flight at once, at most."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.peak = 0

    async def get(self, target: PollTarget, oids: list[str] | tuple[str, ...]) -> list[VarBind]:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await super().get(target, oids)
        finally:
            self.now -= 1


class TestCiscoBgp:
    async def test_v6_peer_drop_via_cbgp_peer2_state(
        self, tmp_path: Path, bus: InMemoryEventBus, events: Subscription
    ) -> None:
        """cbgpPeer2State joins bgpPeerTable (IPv6 peers included) and wins for a peer in
        both: a BGP4-MIB-only change of such a peer is not reported; an IPv6 peer going
        Established -> Idle there is one bgp_backward_transition."""
        if snmpd_binary() is None:
            pytest.fail("snmpd not found: run `make tools` (Debian package snmpd)")
        work = tmp_path / "agent"
        work.mkdir()
        agent = ScriptedSnmpAgent(
            bgp_peers=[AgentBgpPeer("192.0.2.1"), AgentBgpPeer("10.0.0.2")],
            cisco_bgp_peers=[AgentBgpPeer("2001:db8::1"), AgentBgpPeer("192.0.2.1")],
            work_dir=work,
        )
        config = poll_config(
            tmp_path,
            PollTargetConfig(device="cisco-agent", host=agent.host, port=agent.port),
            interval_seconds=0.1,
        )
        metrics = Registry()
        with agent:
            async with PollReceiver(config, bus, metrics):
                await eventually(lambda: polls(metrics) >= 1)
                snapshots, _ = await stored(config.state_path)
                assert snapshots["cisco-agent"].bgp == {
                    "10.0.0.2": BgpPeerState("10.0.0.2", 6),
                    "192.0.2.1": BgpPeerState("192.0.2.1", 6),
                    "2001:db8::1": BgpPeerState("2001:db8::1", 6),
                }
                agent.set_bgp_peer("192.0.2.1", 1)  # cbgpPeer2State still says 6: it wins
                seen = polls(metrics)
                await eventually(lambda: polls(metrics) >= seen + 2)
                await assert_no_event(events, 0.05)
                agent.set_cisco_bgp_peer("2001:db8::1", 1)
                drop = await next_event(events)
                seen = polls(metrics)
                await eventually(lambda: polls(metrics) >= seen + 2)
                await assert_no_event(events, 0.05)
        assert drop.event_class == "bgp_backward_transition"
        assert drop.subject.startswith("sensory.snmp.poll.bgp_backward_transition.")
        assert drop.peer == "2001:db8::1"
        assert drop.target == f"{agent.host}|2001:db8::1"
        assert (drop.payload["bgp_prev_state"], drop.payload["bgp_state"]) == (6, 1)
        snapshots, _ = await stored(config.state_path)
        assert snapshots["cisco-agent"].bgp["2001:db8::1"].state == 1
        assert snapshots["cisco-agent"].bgp["192.0.2.1"].state == 6

    async def test_agent_without_cisco_mib_keeps_bgp4_peers(
        self, tmp_path: Path, bus: InMemoryEventBus
    ) -> None:
        """No cbgpPeer2Table (an empty walk): the bgpPeerTable peers are all there is."""
        if snmpd_binary() is None:
            pytest.fail("snmpd not found: run `make tools` (Debian package snmpd)")
        work = tmp_path / "agent"
        work.mkdir()
        agent = ScriptedSnmpAgent(bgp_peers=[AgentBgpPeer("192.0.2.1", 3)], work_dir=work)
        config = poll_config(
            tmp_path, PollTargetConfig(device="bgp4-agent", host=agent.host, port=agent.port)
        )
        metrics = Registry()
        with agent:
            async with PollReceiver(config, bus, metrics):
                await eventually(lambda: polls(metrics) >= 1)
        assert failures(metrics) == 0
        snapshots, _ = await stored(config.state_path)
        assert snapshots["bgp4-agent"].bgp == {"192.0.2.1": BgpPeerState("192.0.2.1", 3)}


class AttemptClient(SnmpClient):
    """An ``SnmpClient`` that records when each sysUpTime GET (the first request of
    every device poll) was sent, by the event loop's clock."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[float] = []

    async def get(self, target: PollTarget, oids: list[str] | tuple[str, ...]) -> list[VarBind]:
        self.attempts.append(asyncio.get_running_loop().time())
        return await super().get(target, oids)


class TestBackoff:
    async def test_gaps_grow_and_stay_capped(self, tmp_path: Path, bus: InMemoryEventBus) -> None:
        """A dead device: after n failed polls the next waits interval * 2**(n-1), capped
        at max_backoff_factor * interval (gaps ~0.1, 0.2, 0.4, 0.4, 0.4 s); device_down
        still comes after failure_threshold failed polls."""
        interval = 0.1
        config = poll_config(
            tmp_path,
            dead(),
            interval_seconds=interval,
            jitter=0.0,
            timeout_seconds=0.02,
            failure_threshold=3,
            max_backoff_factor=4.0,
        )
        client = AttemptClient()
        metrics = Registry()
        try:
            async with PollReceiver(config, bus, metrics, client=client):
                await eventually(lambda: len(client.attempts) >= 6, within=10.0)
                await eventually(lambda: failures(metrics) >= 5)
        finally:
            client.close()
        t = client.attempts
        gaps = [b - a for a, b in itertools.pairwise(t[:6])]
        assert len(gaps) == 5
        # Start to start: 1x, 2x, 4x, then capped at 4x (generous bounds for a busy host).
        assert 0.8 * interval <= gaps[0] <= 2.5 * interval, gaps
        assert 1.4 <= gaps[1] / gaps[0] <= 3.0, gaps
        assert 1.4 <= gaps[2] / gaps[1] <= 3.0, gaps
        assert 3.5 * interval <= gaps[2] <= 6.0 * interval, gaps
        for later in gaps[3:]:
            assert 3.5 * interval <= later <= 6.0 * interval, gaps  # capped, not 8x, 16x
        down = metrics.get("netcortex_poll_published_total")
        assert isinstance(down, Counter)
        assert down.by_label("event_class") == {"device_down": 1}

    async def test_success_restores_the_interval(
        self, tmp_path: Path, snmpd: SnmpdServer, bus: InMemoryEventBus
    ) -> None:
        """A device that answers is polled every interval (no backoff after successes)."""
        interval = 0.1
        config = poll_config(
            tmp_path, live(snmpd), interval_seconds=interval, jitter=0.0, max_backoff_factor=4.0
        )
        client = AttemptClient()
        metrics = Registry()
        try:
            async with PollReceiver(config, bus, metrics, client=client):
                await eventually(lambda: polls(metrics) >= 5)
        finally:
            client.close()
        t = client.attempts
        gaps = [b - a for a, b in itertools.pairwise(t[:5])]
        assert all(g <= 2.5 * interval for g in gaps), gaps


class TestConcurrency:
    async def test_the_cap_holds(self, tmp_path: Path, bus: InMemoryEventBus) -> None:
        """Six dead devices, concurrency 2: never more than two polls at once (and two
        do run at once, so the check can fail)."""
        targets = [dead(f"dead-{i}") for i in range(6)]
        config = poll_config(
            tmp_path, *targets, concurrency=2, interval_seconds=0.05, timeout_seconds=0.1
        )
        client = CountingClient()
        metrics = Registry()
        receiver = PollReceiver(config, bus, metrics, client=client)
        try:
            async with receiver:
                await eventually(lambda: failures(metrics) >= 12)
                assert receiver.in_progress <= 2
            assert client.peak == 2
        finally:
            client.close()


class TestEngine:
    def test_poll_state_follows_store_backend(self, tmp_path: Path) -> None:
        """make_poll_state: PostgresPollState with store.backend postgres, else SQLite."""
        from netcortex.app import make_poll_state

        poll = {"state_path": str(tmp_path / "p.db")}
        pg = Config.model_validate(
            {"poll": poll, "store": {"backend": "postgres", "postgres_dsn": "postgresql://h/db"}}
        )
        assert isinstance(make_poll_state(pg), PostgresPollState)
        assert isinstance(make_poll_state(Config.model_validate({"poll": poll})), SqlitePollState)

    async def test_engine_runs_the_poller(self, tmp_path: Path, snmpd: SnmpdServer) -> None:
        """poll.enabled: the engine starts a PollReceiver with the receivers, logs it as
        a udp listener, and counts its events; a restored down flag gives device_up,
        which the engine's reflex handlers see."""
        from netcortex.app import Engine

        state = SqlitePollState(tmp_path / "poll_state.db")
        await state.start()
        await state.set_down("lab-agent", True)
        await state.close()
        config = Config.model_validate(
            {
                "trap": {"enabled": False},
                "http": {"enabled": False},
                "store": {"sqlite_path": str(tmp_path / "nc.db")},
                "log": {"stats_interval": 0},
                "poll": poll_config(tmp_path, live(snmpd)).model_dump(),
            }
        )
        # model_dump redacts nothing into the model (SecretStr round-trips as SecretStr).
        assert config.poll.targets[0].community is not None
        engine = Engine(config)
        with capture_logs() as logs:
            async with engine:
                assert "poll" in engine.receivers
                await eventually(lambda: engine.summary().events >= 1)
                await eventually(lambda: polls(engine.metrics) >= 2)
        listening = [e for e in logs if e["event"] == "listening" and e["listener"] == "poll"]
        assert len(listening) == 1
        assert listening[0]["transport"] == "udp"
        assert engine.bound_addresses["poll"][1] > 0
        assert engine.summary().events == 1
        assert any(e["event"] == "poll_started" and e["targets"] == 1 for e in logs)


V3_USER = SnmpdUser("nc-sched", "SHA-256", "sched-auth-0001", "AES", "sched-priv-0001")


@pytest.fixture(scope="module")
def snmpd_v3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpdServer]:
    """A running ``snmpd`` with the v3 user ``V3_USER`` (its v2c community is not ``public``)."""
    if snmpd_binary() is None:
        pytest.fail("snmpd not found: run `make tools` (Debian package snmpd)")
    server = SnmpdServer(work_dir=tmp_path_factory.mktemp("snmpd-v3"), v3_users=[V3_USER])
    server.start()
    yield server
    server.cleanup()


def v3_user(user: SnmpdUser = V3_USER) -> V3User:
    """The ``trap.v3_users`` entry for ``user`` (the engine ID is the trap sender's, unused)."""
    return V3User(
        user=user.name,
        engine_id="0x80001f8804deadbeef",
        auth_protocol=user.auth,
        auth_key=SecretStr(user.auth_key),
        priv_protocol=user.priv,
        priv_key=SecretStr(user.priv_key) if user.priv_key is not None else None,
    )


class TestSnmpV3:
    async def test_v3_target_baseline_poll(
        self,
        tmp_path: Path,
        snmpd_v3: SnmpdServer,
        bus: InMemoryEventBus,
        events: Subscription,
    ) -> None:
        """A ``v3_user`` target is polled with SNMPv3 (the default community ``public``
        is refused by this agent, so only v3 can succeed): the baseline poll is counted,
        stored, and reports nothing; a target naming an unknown user is skipped."""
        good = PollTargetConfig(
            device="v3-agent", host=snmpd_v3.host, port=snmpd_v3.port, v3_user=V3_USER.name
        )
        unknown = PollTargetConfig(
            device="v3-unknown", host=snmpd_v3.host, port=snmpd_v3.port, v3_user="nobody"
        )
        config = poll_config(tmp_path, good, unknown)
        metrics = Registry()
        receiver = PollReceiver(config, bus, metrics, v3_users=[v3_user()])
        with capture_logs() as logs:
            async with receiver:
                assert receiver.targets == ("v3-agent",)
                await eventually(lambda: polls(metrics) >= 2)
                await assert_no_event(events, 0.1)
        assert failures(metrics) == 0
        skipped = [e for e in logs if e["event"] == "poll_target_skipped"]
        assert [(e["device"], e["reason"]) for e in skipped] == [("v3-unknown", "unknown_v3_user")]
        snapshots, _ = await stored(config.state_path)
        snap = snapshots["v3-agent"]
        assert snap.sys_uptime_ticks > 0
        assert "lo" in {i.name for i in snap.interfaces.values()}
        for entry in logs:  # no key reaches a log line
            text = repr(entry)
            assert V3_USER.auth_key not in text
            assert str(V3_USER.priv_key) not in text

    async def test_wrong_v3_key_is_an_auth_error(
        self, tmp_path: Path, snmpd_v3: SnmpdServer, bus: InMemoryEventBus
    ) -> None:
        """A wrong auth key fails the poll as ``auth_error`` (not a timeout), and the
        key reaches no log line."""
        wrong = v3_user().model_copy(update={"auth_key": SecretStr("not-the-key-0001")})
        target = PollTargetConfig(
            device="v3-wrong", host=snmpd_v3.host, port=snmpd_v3.port, v3_user=V3_USER.name
        )
        config = poll_config(tmp_path, target, failure_threshold=1000)
        metrics = Registry()
        with capture_logs() as logs:
            async with PollReceiver(config, bus, metrics, v3_users=[wrong]):
                await eventually(lambda: failures(metrics) >= 1)
        c = metrics.get("netcortex_poll_failures_total")
        assert isinstance(c, Counter)
        assert c.value(reason="auth_error") >= 1
        assert polls(metrics) == 0
        failed = [e for e in logs if e["event"] == "poll_failed"]
        assert failed
        assert failed[0]["reason"] == "auth_error"
        assert failed[0]["usm_reason"] == "wrong_digest"
        assert all("not-the-key-0001" not in repr(e) for e in logs)


def write_inventory(path: Path, devices: list[dict[str, Any]]) -> Path:
    """A FileInventory document holding ``devices`` (NetBox device objects)."""
    path.write_text(json.dumps({"/api/dcim/devices/": devices}), encoding="utf-8")
    return path


class TestInventory:
    async def test_inventory_devices_are_polled(
        self, tmp_path: Path, snmpd: SnmpdServer, bus: InMemoryEventBus, events: Subscription
    ) -> None:
        """``poll.inventory``: every inventory device with an address is polled on
        ``poll.port`` with ``poll.community``, except those a ``poll.targets`` entry
        covers (by name or by host); devices without an address are left out."""
        inv_path = write_inventory(
            tmp_path / "inventory.json",
            [
                {"id": 1, "name": "inv-agent", "primary_ip": {"address": "127.0.0.1/8"}},
                {"id": 2, "name": "inv-noaddr"},
                {"id": 3, "name": "inv-covered", "primary_ip": {"address": "127.0.0.2/8"}},
                {"id": 4, "name": "inv-by-host", "primary_ip": {"address": "127.0.0.3/8"}},
            ],
        )
        inventory = FileInventory(inv_path)
        await inventory.start()
        covered = PollTargetConfig(device="inv-covered", host="127.0.0.3", port=free_udp_port(HOST))
        config = poll_config(
            tmp_path,
            covered,
            port=snmpd.port,
            community=SecretStr(snmpd.community),
            failure_threshold=1000,
        )
        metrics = Registry()
        try:
            with capture_logs() as logs:
                async with PollReceiver(config, bus, metrics, memory=inventory) as receiver:
                    assert receiver.targets == ("inv-covered", "inv-agent")
                    await eventually(lambda: polls(metrics) >= 2)
                    await assert_no_event(events, 0.1)
        finally:
            await inventory.close()
        added = [e for e in logs if e["event"] == "poll_inventory_targets"]
        assert [(e["added"], e["without_address"]) for e in added] == [(1, 1)]
        snapshots, _ = await stored(config.state_path)
        assert set(snapshots) == {"inv-agent"}  # the covered target is dead
        assert snapshots["inv-agent"].agent == "127.0.0.1"
        assert snapshots["inv-agent"].interfaces

    async def test_inventory_off_polls_only_targets(
        self, tmp_path: Path, bus: InMemoryEventBus
    ) -> None:
        """``poll.inventory: false``: the inventory's devices are not polled."""
        inv_path = write_inventory(
            tmp_path / "inventory.json",
            [{"id": 1, "name": "inv-agent", "primary_ip": {"address": "127.0.0.1/8"}}],
        )
        inventory = FileInventory(inv_path)
        await inventory.start()
        try:
            receiver = PollReceiver(poll_config(tmp_path, inventory=False), bus, memory=inventory)
            async with receiver:
                assert receiver.targets == ()
        finally:
            await inventory.close()
