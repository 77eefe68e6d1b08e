"""``JetStreamMembership`` and sharded ``PollReceiver``s against the real session
``nats-server`` (and a private one for the outage), with a real ``snmpd``.

Members are real clients of one bucket in a fresh namespace per test; a "killed"
member is a real subprocess ended with SIGKILL (no goodbye: its key must expire).
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from netcortex.config import BusConfig, PollConfig, PollTargetConfig
from netcortex.contracts.bus import Subscription
from netcortex.contracts.codec import decode_event
from netcortex.errors import BusUnavailable, StoreError
from netcortex.metrics import Counter, Registry
from netcortex.sensory.poll.diff import IF_STATUS_DOWN, DeviceSnapshot
from netcortex.sensory.poll.scheduler import PollReceiver
from netcortex.sensory.poll.shard import JetStreamMembership, owner
from netcortex.sensory.poll.state import PollState, SqlitePollState
from netcortex.thalamus.memory import InMemoryEventBus
from tests.servers import (
    NatsServer,
    ScriptedSnmpAgent,
    SnmpdServer,
    free_port,
)

pytestmark = [pytest.mark.nats, pytest.mark.xdist_group("poll-shard")]

DEADLINE = 10.0
#: short heartbeats keep the tests fast: TTL = 3 heartbeats rounded up = 1 s
HEARTBEAT = 0.3

NewMember = Callable[..., Awaitable[JetStreamMembership]]
#: ``make(member_id, metrics)``: a membership in the test's namespace, not started
MakeMembership = Callable[[str, Registry | None], JetStreamMembership]


async def eventually(cond: Callable[[], bool], within: float = DEADLINE) -> None:
    """Return once ``cond()`` holds; ``TimeoutError`` after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110 - a bounded poll of plain state
            await asyncio.sleep(0.01)


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
async def new_member(nats_url: str, namespace: str) -> AsyncIterator[NewMember]:
    """Start members in this test's namespace; closed at teardown."""
    made: list[JetStreamMembership] = []

    async def make(member_id: str, **kw: Any) -> JetStreamMembership:
        kw.setdefault("heartbeat", HEARTBEAT)
        m = JetStreamMembership(
            nats_url=kw.pop("nats_url", nats_url),
            namespace=namespace,
            member_id=member_id,
            **kw,
        )
        made.append(m)
        await m.start()
        return m

    yield make
    for m in reversed(made):
        await m.close()


@pytest.fixture
def membership(nats_url: str, namespace: str) -> MakeMembership:
    """Memberships for receivers (which start and close them)."""

    def make(
        member_id: str, metrics: Registry | None, heartbeat: float = HEARTBEAT
    ) -> JetStreamMembership:
        return JetStreamMembership(
            nats_url=nats_url,
            namespace=namespace,
            member_id=member_id,
            heartbeat=heartbeat,
            metrics=metrics,
        )

    return make


# -- membership ---------------------------------------------------------------------


def test_invalid_names_are_refused() -> None:
    """A bucket, namespace or member id that is not one token is a ValueError."""
    with pytest.raises(ValueError, match="bucket"):
        JetStreamMembership(nats_url="nats://127.0.0.1:1", namespace="a.b")
    with pytest.raises(ValueError, match="member id"):
        JetStreamMembership(nats_url="nats://127.0.0.1:1", member_id="a.b")
    with pytest.raises(ValueError, match="heartbeat"):
        JetStreamMembership(nats_url="nats://127.0.0.1:1", heartbeat=0)


async def test_unreachable_server_is_bus_unavailable() -> None:
    """``start`` against a port nobody listens on fails with ``BusUnavailable`` in time."""
    m = JetStreamMembership(nats_url=f"nats://127.0.0.1:{free_port()}", timeout=0.5)
    async with asyncio.timeout(DEADLINE):
        with pytest.raises(BusUnavailable):
            await m.start()
    await m.close()


async def test_members_see_each_other_and_a_graceful_leave_at_once(
    new_member: NewMember,
) -> None:
    """Two members see both ids; one that closes is gone from the other's view well
    before its TTL (its delete marker is heard at once); changes are counted."""
    metrics = Registry()
    a = await new_member("rx-a", metrics=metrics)
    assert a.members() == {"rx-a"}
    b = await new_member("rx-b", heartbeat=30.0)  # b's view comes from its start listing
    assert b.members() == {"rx-a", "rx-b"}
    await eventually(lambda: a.members() == {"rx-a", "rx-b"}, within=2.0)
    changes = metrics.get("netcortex_poll_shard_membership_changes_total")
    assert isinstance(changes, Counter)
    assert changes.total() == 1
    assert b.ttl == 90  # 3 x 30 s: only the delete marker can make it this quick
    left = time.monotonic()
    await b.close()
    await eventually(lambda: a.members() == {"rx-a"}, within=2.0)
    assert time.monotonic() - left < 2.0
    assert changes.total() == 2
    text = metrics.render()
    assert "netcortex_poll_shard_members 1" in text


async def test_a_killed_member_expires_after_its_ttl(
    new_member: NewMember, nats_url: str, namespace: str
) -> None:
    """A member killed with SIGKILL (no delete marker) stays in the view until the
    server drops its key, then leaves it within TTL + a heartbeat (+ slack)."""
    a = await new_member("rx-a")
    gone_at: list[float] = []
    a.on_change(
        lambda: gone_at.append(time.monotonic()) if "rx-doomed" not in a.members() else None
    )
    script = textwrap.dedent(
        f"""
        import asyncio
        from netcortex.sensory.poll.shard import JetStreamMembership
        async def main():
            m = JetStreamMembership(nats_url={nats_url!r}, namespace={namespace!r},
                                    member_id="rx-doomed", heartbeat={HEARTBEAT})
            await m.start()
            print("joined", flush=True)
            await asyncio.sleep(600)
        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(DEADLINE):  # structlog writes to stdout too
            while (line := await proc.stdout.readline()) and line.strip() != b"joined":
                pass
        assert line.strip() == b"joined"
        await eventually(lambda: "rx-doomed" in a.members(), within=2.0)
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), DEADLINE)
        killed = time.monotonic()
        await eventually(lambda: a.members() == {"rx-a"}, within=DEADLINE)
        gone = gone_at[0]  # the first time it left the view
        # no goodbye: it stayed until its key expired, TTL after its last heartbeat
        # (at most one heartbeat before the kill; 0.1 s for the kill itself)
        assert gone - killed >= a.ttl - HEARTBEAT - 0.1
        # TTL (1 s) + one heartbeat to notice + the server's coarse TTL timer
        assert gone - killed < a.ttl + HEARTBEAT + 2.0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_outage_keeps_the_last_view_and_recovers(tmp_path: Path) -> None:
    """With the server gone, the view is kept (never empty, never shrunk to itself),
    failures are counted and logged once; after a restart (file storage) the
    heartbeat gets through again and the other members are seen as before."""
    metrics = Registry()
    with NatsServer(store_dir=tmp_path) as server:
        a = JetStreamMembership(
            nats_url=server.url,
            member_id="rx-a",
            heartbeat=HEARTBEAT,
            metrics=metrics,
            timeout=0.5,
        )
        b = JetStreamMembership(
            nats_url=server.url, member_id="rx-b", heartbeat=HEARTBEAT, timeout=0.5
        )
        await a.start()
        await b.start()
        try:
            await eventually(lambda: a.members() == {"rx-a", "rx-b"})
            errors = metrics.get("netcortex_poll_shard_errors_total")
            assert isinstance(errors, Counter)
            with capture_logs() as logs:
                server.stop()
                await eventually(lambda: errors.total() >= 3)
                assert a.members() == {"rx-a", "rx-b"}
                unavailable = [
                    e
                    for e in logs
                    if e["event"] == "poll_shard_membership_unavailable" and e["member"] == "rx-a"
                ]
                assert len(unavailable) == 1
                server.start()
                await eventually(
                    lambda: any(
                        e["event"] == "poll_shard_membership_restored" and e["member"] == "rx-a"
                        for e in logs
                    )
                )
            await eventually(lambda: a.members() == {"rx-a", "rx-b"})
            seen = errors.total()
            await asyncio.sleep(3 * HEARTBEAT)
            assert errors.total() == seen  # working again
        finally:
            await b.close()
            await a.close()


class HoldingRelay:
    """A real TCP relay to nats-server for one client whose server → client bytes can
    be held back, then delivered in a single write (the client reads them at once)."""

    def __init__(self, server: NatsServer) -> None:
        self._upstream = (server.host, server.port)
        self._server: asyncio.Server | None = None
        self._to_client: asyncio.StreamWriter | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self.holding = False
        self.held = bytearray()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._to_client = writer
        self._writers += [writer, up_writer]
        for pump in (self._pump(reader, up_writer), self._pump(up_reader, writer, held=True)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, held: bool = False
    ) -> None:
        while data := await src.read(65536):
            if held and self.holding:
                self.held += data
                continue
            dst.write(data)
            await dst.drain()
        dst.close()

    def hold(self) -> None:
        """Keep what the server sends from now on."""
        self.holding = True

    def release(self) -> None:
        """Deliver everything held in one write, and relay again."""
        assert self._to_client is not None
        self.holding = False
        self._to_client.write(bytes(self.held))
        self.held.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)


#: the start of a JetStream publish acknowledgement (``{"stream":"KV_...","seq":n}``)
PUB_ACK = b'{"stream":"KV_'


async def test_close_ends_when_its_cancel_crosses_a_reply(
    nats_server: NatsServer, namespace: str, new_member: NewMember
) -> None:
    """A close whose cancel of the heartbeat lands after a request's reply arrived but
    before the heartbeat resumed (nats-py's ``asyncio.wait_for`` then returns the
    reply and drops the cancel, Python 3.11) still ends, and the member leaves.

    The relay holds rx-a's traffic until it has both rx-b's announcement and the
    acknowledgement of rx-a's next heartbeat, then delivers them in one read: the
    announcement calls rx-a's ``on_change``, which closes rx-a right then."""
    relay = HoldingRelay(nats_server)
    await relay.start()
    a = JetStreamMembership(
        nats_url=relay.url, namespace=namespace, member_id="rx-a", heartbeat=1.0, timeout=5.0
    )
    closing: list[asyncio.Task[None]] = []

    def close_on_join() -> None:
        if "rx-b" in a.members() and not closing:
            closing.append(asyncio.create_task(a.close()))

    a.on_change(close_on_join)
    try:
        await a.start()
        relay.hold()
        b = await new_member("rx-b", heartbeat=30.0)  # its put reaches rx-a: held
        announced = b".poll.rx-b "

        def acked_after_announcement() -> bool:
            at = relay.held.find(announced)
            return at >= 0 and relay.held.find(PUB_ACK, at) >= 0

        await eventually(acked_after_announcement, within=3.0)
        relay.release()
        await eventually(lambda: bool(closing), within=2.0)
        done, _ = await asyncio.wait(closing, timeout=DEADLINE)
        assert done, "close hung: the heartbeat outlived its cancel"
        await eventually(lambda: b.members() == {"rx-b"}, within=2.0)  # rx-a's goodbye
    finally:
        await a.close()
        await relay.close()


# -- sharded receivers ----------------------------------------------------------------


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


def targets(snmpd: SnmpdServer, names: list[str]) -> list[PollTargetConfig]:
    """``names`` as targets, all the one real agent (a device is a name here)."""
    return [
        PollTargetConfig(
            device=n, host=snmpd.host, port=snmpd.port, community=SecretStr(snmpd.community)
        )
        for n in names
    ]


def poll_config(state: Path, names: list[str], snmpd: SnmpdServer) -> PollConfig:
    """Poll ``names`` (all ``snmpd``) every 0.2 s; state in ``state`` (shared when the
    receivers are given the same path, as PostgreSQL would be)."""
    return PollConfig(
        enabled=True,
        interval_seconds=0.2,
        timeout_seconds=0.5,
        retries=0,
        bgp=False,
        state_path=state,
        targets=targets(snmpd, names),
    )


def polled(metrics: Registry) -> int:
    c = metrics.get("netcortex_received_total")
    return int(c.value(source="snmp.poll")) if isinstance(c, Counter) else 0


def device_owned_by(member: str) -> str:
    """A device name the rendezvous hash gives ``member`` while rx-a and rx-b are up
    (the other polls it only while alone)."""
    return next(f"dev{i}" for i in range(100) if owner(f"dev{i}", ["rx-a", "rx-b"]) == member)


@dataclass(frozen=True)
class Pair:
    """rx-a and rx-b: sharded receivers on one config (one shared state file, as
    PostgreSQL would be), each with its own registry; not started."""

    a: PollReceiver
    b: PollReceiver
    ma: Registry
    mb: Registry

    async def close(self) -> None:
        """Close rx-a, then rx-b (idempotent)."""
        await self.a.close()
        await self.b.close()


#: ``make(config, *, state_a=None, state_b=None, heartbeat=HEARTBEAT)``: a ``Pair``
#: (closed at teardown too)
MakePair = Callable[..., Pair]


@pytest.fixture
async def pair(bus: InMemoryEventBus, membership: MakeMembership) -> AsyncIterator[MakePair]:
    """Make rx-a and rx-b on ``bus`` (a state passed replaces that one's state file)."""
    made: list[Pair] = []

    def make(
        config: PollConfig,
        *,
        state_a: PollState | None = None,
        state_b: PollState | None = None,
        heartbeat: float = HEARTBEAT,
    ) -> Pair:
        ma, mb = Registry(), Registry()
        a = PollReceiver(
            config, bus, ma, membership=membership("rx-a", ma, heartbeat), state=state_a
        )
        b = PollReceiver(
            config, bus, mb, membership=membership("rx-b", mb, heartbeat), state=state_b
        )
        made.append(Pair(a, b, ma, mb))
        return made[-1]

    yield make
    for receivers in made:
        await receivers.close()


async def test_receivers_split_the_targets_and_take_over_on_leave(
    tmp_path: Path, snmpd: SnmpdServer, pair: MakePair
) -> None:
    """Two receivers on eight targets own disjoint shares that cover them all (the
    rendezvous owner of each); when one closes the other owns all eight at once
    (``poll_shard_changed``, the owned gauge) and polls them."""
    names = [f"sw{i}" for i in range(8)]
    rx = pair(poll_config(tmp_path / "state.db", names, snmpd))
    a, b, ma, mb = rx.a, rx.b, rx.ma, rx.mb
    with capture_logs() as logs:
        try:
            await a.start()
            await b.start()
            await eventually(lambda: len(a.owned) + len(b.owned) == len(names))
            assert not a.owned & b.owned
            assert a.owned | b.owned == set(names)
            for name in names:
                expected = owner(name, ["rx-a", "rx-b"])
                assert name in (a.owned if expected == "rx-a" else b.owned)
            assert a.owned  # 8 names: each gets some (fixed by the hash)
            assert b.owned
            await eventually(lambda: polled(ma) >= 3 and polled(mb) >= 3)
            assert f"netcortex_poll_shard_owned_targets {len(b.owned)}" in mb.render()
            b_share = set(b.owned)
            await b.close()

            def taken_over() -> list[MutableMapping[str, Any]]:
                return [e for e in logs if e["event"] == "poll_shard_changed" and e["owned"] == 8]

            await eventually(lambda: bool(taken_over()), within=2.0)
            assert a.owned == set(names)
            (changed,) = taken_over()
            assert changed["acquired"] == len(b_share)
            assert set(changed["acquired_devices"]) == b_share
            assert changed["released"] == 0
            before = polled(ma)
            await eventually(lambda: polled(ma) >= before + 2 * len(names))
        finally:
            await rx.close()


async def test_takeover_diffs_against_the_previous_owners_last_snapshot(
    tmp_path: Path,
    agent: ScriptedSnmpAgent,
    events: Subscription,
    pair: MakePair,
) -> None:
    """A device taken over is diffed against what its previous owner saved in the
    shared state, not against the stale snapshot the new owner kept from when it
    polled the device itself: a link that went down is reported exactly once."""
    device = device_owned_by("rx-a")
    rx = pair(poll_config(tmp_path / "shared.db", [device], agent))
    a, b, ma, mb = rx.a, rx.b, rx.ma, rx.mb
    try:
        await b.start()
        await eventually(lambda: polled(mb) >= 2)  # b's baseline: interface 3 up
        await a.start()
        await eventually(lambda: a.owned == {device} and not b.owned)
        agent.set_interface(3, oper=IF_STATUS_DOWN)
        down = decode_event((await events.next(timeout=DEADLINE)).data)
        assert down.event_class == "link_down"
        before = polled(ma)
        await eventually(lambda: polled(ma) >= before + 2)  # a's state: down, saved
        await a.close()  # its last report is saved, then it leaves
        await eventually(lambda: b.owned == {device}, within=2.0)
        before = polled(mb)
        await eventually(lambda: polled(mb) >= before + 3)
    finally:
        await rx.close()
    # b diffed against a's saved snapshot (down), not its own (up): nothing more
    try:
        msg = await events.next(timeout=0.3)
    except TimeoutError:
        return
    pytest.fail(f"unexpected event {decode_event(msg.data)}")


# -- handover: what the new owner reads, and when ----------------------------------


class FlakyState(SqlitePollState):
    """The shared state whose reads fail while ``fail`` (PostgreSQL going away)."""

    fail = False

    async def load_all(self) -> dict[str, DeviceSnapshot]:
        if self.fail:
            raise StoreError("the state store is down (test)")
        return await super().load_all()


class SlowState(SqlitePollState):
    """The shared state whose next save takes ``delay`` seconds (a slow PostgreSQL
    write), then notes ``state_saved`` in ``marks`` (the test's captured logs, so
    the order against the receivers' log lines shows)."""

    delay = 0.0
    marks: list[MutableMapping[str, Any]] | None = None

    async def save(self, snapshot: DeviceSnapshot) -> None:
        delay, self.delay = self.delay, 0.0
        await asyncio.sleep(delay)
        await super().save(snapshot)
        if delay and self.marks is not None:
            self.marks.append({"event": "state_saved", "device": snapshot.device})


def handover_problems(metrics: Registry, problem: str) -> int:
    c = metrics.get("netcortex_poll_shard_handover_problems_total")
    return int(c.value(problem=problem)) if isinstance(c, Counter) else 0


async def drain(events: Subscription) -> list[str]:
    """The event classes still delivered (none for 0.3 s: done)."""
    seen: list[str] = []
    while True:
        try:
            seen.append(decode_event((await events.next(timeout=0.3)).data).event_class)
        except TimeoutError:
            return seen


def test_request_timeout_fits_the_ttl() -> None:
    """Every request (and listing) is bounded by ``min(timeout, heartbeat)``, so a
    slow server cannot stretch two heartbeats further apart than the TTL
    (``TTL >= heartbeat + 2 * request timeout``) and get a live member dropped."""
    for heartbeat in (0.1, 0.3, 0.5, 1.0, 2.0, 10.0):
        m = JetStreamMembership(nats_url="nats://127.0.0.1:1", heartbeat=heartbeat, timeout=2.0)
        assert m.request_timeout == min(2.0, heartbeat)
        assert m.ttl >= m.heartbeat + 2 * m.request_timeout


async def test_a_failed_reload_on_takeover_makes_a_fresh_baseline(
    tmp_path: Path,
    agent: ScriptedSnmpAgent,
    events: Subscription,
    pair: MakePair,
) -> None:
    """rx-b polled the device, gave it to rx-a (which saw a link go down and
    reported it), and takes it back while the state cannot be read: its first poll
    is a baseline (no second ``link_down`` from its own stale snapshot), counted
    and logged."""
    device = device_owned_by("rx-a")
    config = poll_config(tmp_path / "shared.db", [device], agent)
    state_b = FlakyState(config.state_path)
    rx = pair(config, state_b=state_b)
    a, b, ma, mb = rx.a, rx.b, rx.ma, rx.mb
    seen: list[str] = []
    with capture_logs() as logs:
        try:
            await b.start()
            await eventually(lambda: polled(mb) >= 2)  # b's baseline: interface 3 up
            await a.start()
            await eventually(lambda: a.owned == {device} and not b.owned)
            agent.set_interface(3, oper=IF_STATUS_DOWN)
            seen.append(decode_event((await events.next(timeout=DEADLINE)).data).event_class)
            before = polled(ma)
            await eventually(lambda: polled(ma) >= before + 2)
            state_b.fail = True
            await a.close()
            await eventually(lambda: b.owned == {device}, within=2.0)
            before = polled(mb)
            await eventually(lambda: polled(mb) >= before + 3)
        finally:
            await rx.close()
    seen += await drain(events)
    assert seen == ["link_down"]
    assert handover_problems(mb, "reload_failed") == 1
    (failed,) = [e for e in logs if e["event"] == "poll_shard_state_reload_failed"]
    assert failed["device"] == device
    assert failed["log_level"] == "error"


async def test_a_joiner_reads_the_state_after_the_old_owners_last_report(
    tmp_path: Path,
    agent: ScriptedSnmpAgent,
    events: Subscription,
    pair: MakePair,
) -> None:
    """rx-b joins while rx-a's report of a link going down is still being saved
    (a slow state write): rx-a's reshard returns only once that save is done, and
    rx-b reads the state only after it, so the change is reported once."""
    device = device_owned_by("rx-b")
    config = poll_config(tmp_path / "shared.db", [device], agent)
    state_a = SlowState(config.state_path)
    # The releasing side waits up to one heartbeat for the slow save: a 1 s heartbeat
    # leaves a loaded machine 0.75 s of margin (with 0.3 s the order flipped once).
    rx = pair(config, state_a=state_a, heartbeat=1.0)
    a, b, ma, mb = rx.a, rx.b, rx.ma, rx.mb
    seen: list[str] = []
    with capture_logs() as logs:
        try:
            await a.start()
            await eventually(lambda: polled(ma) >= 2)  # a's baseline: interface 3 up
            state_a.marks = logs
            state_a.delay = 0.25  # < one heartbeat: within what the handover waits for
            agent.set_interface(3, oper=IF_STATUS_DOWN)
            seen.append(decode_event((await events.next(timeout=DEADLINE)).data).event_class)
            await b.start()  # a's snapshot (interface 3 down) is not saved yet
            await eventually(lambda: b.owned == {device} and not a.owned)
            before = polled(mb)
            await eventually(lambda: polled(mb) >= before + 3)
        finally:
            await rx.close()
    seen += await drain(events)
    assert seen == ["link_down"]
    order = [
        e["event"]
        for e in logs
        if e["event"] == "state_saved" or (e["event"] == "poll_shard_changed" and e["released"])
    ]
    assert order == ["state_saved", "poll_shard_changed"]  # a waited for its report
    assert handover_problems(ma, "release_slow") == 0


async def test_a_report_outlasting_the_release_wait_is_counted(
    tmp_path: Path,
    agent: ScriptedSnmpAgent,
    events: Subscription,
    pair: MakePair,
) -> None:
    """A save slower than the releasing side waits (one heartbeat) does not hold the
    reshard up for longer: it is counted and logged as a handover problem (the new
    owner may read the state before it lands), and it still lands."""
    device = device_owned_by("rx-b")
    config = poll_config(tmp_path / "shared.db", [device], agent)
    state_a = SlowState(config.state_path)
    rx = pair(config, state_a=state_a)
    a, b, ma = rx.a, rx.b, rx.ma
    with capture_logs() as logs:
        try:
            await a.start()
            await eventually(lambda: polled(ma) >= 2)
            state_a.marks = logs
            state_a.delay = 1.0  # > one heartbeat (0.3 s)
            agent.set_interface(3, oper=IF_STATUS_DOWN)
            await events.next(timeout=DEADLINE)
            await b.start()
            await eventually(lambda: handover_problems(ma, "release_slow") == 1)
            (slow,) = [e for e in logs if e["event"] == "poll_shard_release_slow"]
            assert slow["devices"] == [device]
            assert not any(e["event"] == "state_saved" for e in logs)
            await eventually(lambda: any(e["event"] == "state_saved" for e in logs))
        finally:
            await rx.close()
