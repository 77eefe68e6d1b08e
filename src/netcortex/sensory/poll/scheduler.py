"""Sensory / poll: ``PollReceiver`` — poll every device on its own schedule, diff, publish.

``PollReceiver`` runs one task per device. The first poll comes after a random
part of one interval (so a restart does not poll every device at once); then
each device sleeps its interval, start to start, moved by a random ``±jitter``
fraction on every cycle (so devices do not poll in lock-step; a poll longer
than the interval skips the missed cycles). A failing device backs off: after
``n`` consecutive failed polls the next one waits ``interval * 2**(n-1)``, at
most ``interval * poll.max_backoff_factor``; one success restores the interval
(``device_down`` still counts failed polls, so it comes later in time).

A poll takes a slot of a global ``asyncio.Semaphore`` (``poll.concurrency``)
and reads: a GET of sysUpTime.0, then GETBULK walks of IF-MIB ifName
(ifXTable), ifDescr, ifAdminStatus, ifOperStatus and ifLastChange, plus
BGP4-MIB bgpPeerState and bgpPeerRemoteAddr and CISCO-BGP4-MIB cbgpPeer2State
when ``poll.bgp`` (an agent without BGP, or one refusing the BGP walks, just
has no peers). A peer in cbgpPeer2Table (which also has the IPv6 peers
BGP4-MIB cannot index) wins over its bgpPeerTable row; the two tables are
joined by canonical address text. Every request has the configured timeout and
retries; a device that does not answer sysUpTime.0 is not walked. Each device
waits only for itself: a dead or slow one holds one slot of the cap for at most
its own timeouts, never another device's schedule.

A successful poll becomes a ``DeviceSnapshot``, is diffed against the last one
(``diff``; loaded from the ``PollState`` at start, so a restart neither
re-fires nor misses a change), and the events are published; only then is the
snapshot saved (a crash between the two re-reports instead of losing). Failed
polls feed ``FailureTracker``: ``device_down`` after ``failure_threshold``
consecutive failures, ``device_up`` on the first success after it; the flag is
stored with ``set_down`` after its event is published. A report with an event
the bus did not take (an outage past ``outage_buffer_seconds``, a refusal) is
deferred (``poll_report_deferred``): nothing of it is stored and the device's
baseline stays — its last snapshot, down flag and the tracker's ``device_down``
/ ``device_up`` (``FailureTracker.checkpoint``) — so the next poll reports the
change again, as does a restart or the device's new owner, which read the same
state. At least once: an event of that report that did get out is published
again too (new id; the reflex dedup window absorbs it). The state is
``SqlitePollState`` on ``poll.state_path`` unless the caller passes one
(``app.make_poll_state``: ``PostgresPollState`` with ``store.backend:
postgres``, issue 6).

Events are published like the trap receiver's (``encode_event``,
``msg_id=event.id``, re-tried on ``BusUnavailable`` / ``PublishTimeout``) on
``sensory.snmp.poll.<class>.<target>``. Publishing and saving run in a task of
their own that ``close`` lets finish (bounded by ``drain_timeout``), so stopping
never cuts a report in half.

Targets are ``poll.targets`` plus, with ``poll.inventory`` and a semantic
memory, every inventory device (``SemanticMemory.devices``) that has an address
(its primary IP, else its first one) and is not covered by a ``poll.targets``
entry (same device name, or that entry's host is one of the device's
addresses: a configured entry overrides port and credentials). Inventory
devices are polled on ``poll.port`` with ``poll.community``. The list is taken
once, at ``start``: a device the inventory gains (or loses) later is polled
(or dropped) after a restart. A target with ``v3_user`` is polled with SNMPv3
using that ``trap.v3_users`` entry's user, protocols and keys (the agent's
engine ID is discovered); one naming an unknown user is skipped with a
``poll_target_skipped reason=unknown_v3_user`` warning (never polled with v2c).

Sharding (issue 10). With a ``membership`` (``poll.sharding``; ``shard``) the
receiver polls only its share: the targets whose rendezvous hash over the live
members picks it. After every membership change it:

* gives up devices: stops their schedules, forgets their last snapshot and
  failure count (the new owner's word counts now), and waits for their reports
  under way (publish + save) to finish, at most one heartbeat
  (``poll_shard_release_slow`` past that; the report still finishes), so they
  are in the state before the new owner reads it;
* takes devices over: their first poll here waits ``2 * heartbeat`` plus a
  random part of an interval (one heartbeat for every previous owner to notice
  the change, one for its reports under way), and right before it reads the
  device's last snapshot and down flag from the state again (one read of the
  state serves every device waiting for one). With ``store.backend: postgres``
  that is what the previous owner saved, so a change it reported is not
  reported again and a device it saw go down gets its ``device_up`` here. If
  that read fails (``poll_shard_state_reload_failed``, counted), the first poll
  is a fresh baseline: recorded, no events (a change during the handover, or the
  ``device_up`` of a device the previous owner had marked down, is missed).

A receiver that starts while others are live treats its first share as taken
over (the same wait and read). A report of the previous owner that takes
longer than those two heartbeats (a very slow state store) can still be read
too early and be reported once more by the new owner. ``close`` leaves the
membership only after the last report is saved. A membership that cannot reach
NATS keeps its last view (``shard``), so polling never stops. Metrics
``netcortex_poll_shard_owned_targets``,
``netcortex_poll_shard_changes_total{direction}`` and
``netcortex_poll_shard_handover_problems_total{problem}`` (``reload_failed``,
``release_slow``); one ``poll_shard_changed`` line per change (counts, and up to
20 device names each way).

Metrics: ``netcortex_received_total{source="snmp.poll"}`` (one per successful
poll), ``netcortex_poll_duration_seconds``, ``netcortex_poll_failures_total{reason}``
(``timeout``, ``agent_error``, ``auth_error``, ``poll_error``),
``netcortex_poll_published_total{event_class}``,
``netcortex_poll_publish_failed_total{error}``,
``netcortex_poll_reports_deferred_total``, ``netcortex_poll_in_progress``.

Imports: stdlib, structlog, pydantic (``SecretStr``), netcortex.aio/config/contracts/errors/
logs/metrics, siblings and ``sensory.trap.ber`` (``VarBind``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from pydantic import SecretStr

from netcortex.aio import stop_tasks
from netcortex.config import PollConfig, V3User
from netcortex.contracts.bus import EventBus
from netcortex.contracts.events import SensoryEvent
from netcortex.contracts.memory import SemanticMemory
from netcortex.errors import (
    AgentError,
    PollAuthError,
    PollError,
    PollTimeout,
    StoreError,
)
from netcortex.logs import RejectionLog
from netcortex.metrics import Registry
from netcortex.sensory._publish import BusOutage, publish_event
from netcortex.sensory.poll.diff import (
    SOURCE,
    BgpPeerState,
    DeviceSnapshot,
    FailureTracker,
    InterfaceState,
    diff,
)
from netcortex.sensory.poll.shard import PollMembership, owned
from netcortex.sensory.poll.snmp import PollTarget, SnmpClient, UsmCredentials
from netcortex.sensory.poll.state import PollState, SqlitePollState
from netcortex.sensory.trap.ber import VarBind

__all__ = ["PollReceiver"]

log = structlog.get_logger(__name__)

SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
IF_DESCR: Final = "1.3.6.1.2.1.2.2.1.2"
IF_ADMIN_STATUS: Final = "1.3.6.1.2.1.2.2.1.7"
IF_OPER_STATUS: Final = "1.3.6.1.2.1.2.2.1.8"
IF_LAST_CHANGE: Final = "1.3.6.1.2.1.2.2.1.9"
IF_NAME: Final = "1.3.6.1.2.1.31.1.1.1.1"
BGP_PEER_STATE: Final = "1.3.6.1.2.1.15.3.1.2"
BGP_PEER_REMOTE_ADDR: Final = "1.3.6.1.2.1.15.3.1.7"
#: CISCO-BGP4-MIB cbgpPeer2State, indexed by cbgpPeer2Type + cbgpPeer2RemoteAddr.
CBGP_PEER2_STATE: Final = "1.3.6.1.4.1.9.9.187.1.2.5.1.3"
_INET_IPV4: Final = 1  # InetAddressType ipv4
_INET_IPV6: Final = 2  # InetAddressType ipv6

_POLL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class _Loaded:
    """One read of the whole state, begun at ``at`` (``time.monotonic``)."""

    at: float
    snapshots: Mapping[str, DeviceSnapshot]
    down: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Target:
    """One device to poll."""

    device: str
    poll: PollTarget
    v3_user: V3User | None = None


class PollReceiver:
    """SNMP poller publishing link / BGP / reboot / reachability ``SensoryEvent``s.

    Args:
        config: the ``poll`` section.
        bus: where events go.
        metrics: registry for the metrics (a private one by default).
        memory: semantic memory to canonicalise devices and interfaces with
            (started and closed by its owner).
        v3_users: the ``trap.v3_users`` entries a target's ``v3_user`` names.
        client: the SNMP client to poll with (started here; closed here only
            when this receiver created it).
        drain_timeout: how long ``close`` waits for reports being published.
        log_interval: at most one ``poll_failed`` line per (device, reason) per
            this many seconds.
        rng: randomness for the start offsets and the jitter (tests pass a seeded one).
        state: where the last known snapshots and down flags are kept (started
            and closed by this receiver, its only user); ``SqlitePollState`` on
            ``config.state_path`` when ``None``.
        membership: the live pollers to share the targets with (``poll.sharding``;
            started and closed by this receiver, its only user); ``None`` polls
            every target.
        outage_buffer_seconds: how long a bus outage is ridden out by a report's
            publish (``bus.outage_buffer_seconds``, ``sensory._publish``).
    """

    def __init__(
        self,
        config: PollConfig,
        bus: EventBus,
        metrics: Registry | None = None,
        *,
        memory: SemanticMemory | None = None,
        v3_users: Sequence[V3User] = (),
        client: SnmpClient | None = None,
        drain_timeout: float = 10.0,
        log_interval: float = 60.0,
        rng: random.Random | None = None,
        state: PollState | None = None,
        membership: PollMembership | None = None,
        outage_buffer_seconds: float = 120.0,
    ) -> None:
        self._config = config
        self._bus = bus
        # A bus outage (nats-server restarting) is ridden out like the trap receiver's
        # (``sensory._publish``): a report's publish retries for the budget, shared by
        # every device, then counts its events publish_failed{error="bus_outage"}.
        self._outage = BusOutage(
            outage_buffer_seconds,
            what="poll",
            logger=log,
            connected=lambda: bool(getattr(bus, "connected", True)),
        )
        self._memory = memory
        self._v3_users = {u.user: u for u in v3_users}
        self._own_client = client is None
        self._client = client if client is not None else SnmpClient()
        self._drain_timeout = drain_timeout
        self._rng = rng if rng is not None else random.Random()  # scheduling, not secrets
        self._state: PollState = state if state is not None else SqlitePollState(config.state_path)
        self._last: dict[str, DeviceSnapshot] = {}
        #: one tracker per device, so a device taken over can be reset from the state
        self._trackers: dict[str, FailureTracker] = {}
        self._limit = asyncio.Semaphore(config.concurrency)
        #: the running schedules, by device (only the owned devices with sharding)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._membership = membership
        self._owned: frozenset[str] = frozenset()
        self._reshard = asyncio.Event()
        self._reshard_task: asyncio.Task[None] | None = None
        #: devices taken over whose state is read again right before their first poll
        #: here: device → the monotonic time a read must have begun at (or after)
        self._reload_due: dict[str, float] = {}
        #: the latest read of the whole state, and the one under way (shared by the
        #: devices waiting for a read)
        self._loaded: _Loaded | None = None
        self._loading: tuple[float, asyncio.Task[_Loaded]] | None = None
        #: reports (publish + save) under way, with their device
        self._reports: dict[asyncio.Task[None], str] = {}
        self._targets: list[_Target] = []
        self._in_progress = 0
        self._started = False
        self._closed = False
        self._rejections = RejectionLog(
            log, "poll_failed", who_field="device", interval=log_interval, new_pairs=100
        )

        reg = metrics if metrics is not None else Registry()
        self.metrics = reg
        self._received = reg.counter(
            "netcortex_received_total", "inputs received by a receiver", ["source"]
        )
        self._duration = reg.histogram(
            "netcortex_poll_duration_seconds",
            "time to poll one device (successful or not)",
            buckets=_POLL_BUCKETS,
        )
        self._failures = reg.counter(
            "netcortex_poll_failures_total", "device polls that failed", ["reason"]
        )
        self._published = reg.counter(
            "netcortex_poll_published_total", "poll events published on the bus", ["event_class"]
        )
        self._publish_failed = reg.counter(
            "netcortex_poll_publish_failed_total", "poll events the bus did not accept", ["error"]
        )
        self._deferred = reg.counter(
            "netcortex_poll_reports_deferred_total",
            "poll reports not stored because an event of theirs was not published (the "
            "device's baseline is kept: the next poll reports the change again)",
        )
        in_progress = reg.gauge("netcortex_poll_in_progress", "devices being polled right now")
        reg.add_collector(lambda: in_progress.set(self._in_progress))
        if membership is not None:
            owned_gauge = reg.gauge(
                "netcortex_poll_shard_owned_targets",
                "poll targets this receiver polls (its share of the targets)",
            )
            reg.add_collector(lambda: owned_gauge.set(len(self._owned)))
            self._shard_changes = reg.counter(
                "netcortex_poll_shard_changes_total",
                "changes of the targets this receiver polls, by direction",
                ["direction"],
            )
            self._handover_problems = reg.counter(
                "netcortex_poll_shard_handover_problems_total",
                "handovers of a device that may re-report or miss a change: the state "
                "could not be read again (reload_failed), or a report of a device given "
                "up outlasted the wait (release_slow)",
                ["problem"],
            )

    # ------------------------------------------------------------------ lifecycle

    @property
    def bound_address(self) -> tuple[str, int]:
        """``(host, port)`` of the client's local UDP socket.

        Raises:
            RuntimeError: not started.
        """
        if not self._started or self._closed:
            raise RuntimeError("PollReceiver is not started")
        try:
            return self._client.local_address
        except PollError as exc:
            raise RuntimeError("PollReceiver is not started") from exc

    @property
    def targets(self) -> tuple[str, ...]:
        """Every device name this receiver may poll (after ``start``)."""
        return tuple(t.device for t in self._targets)

    @property
    def owned(self) -> frozenset[str]:
        """The device names this receiver polls now: its share with sharding, else all."""
        return self._owned

    @property
    def in_progress(self) -> int:
        """Devices being polled right now (at most ``poll.concurrency``)."""
        return self._in_progress

    async def start(self) -> None:
        """Open the state, start the client and one schedule per device. Idempotent.

        Raises:
            StoreError: the state cannot be opened or read.
            OSError: the client socket cannot be opened.
            RuntimeError: the receiver was closed (it is not restartable).
        """
        if self._closed:
            raise RuntimeError("PollReceiver is closed")
        if self._started:
            return
        await self._state.start()
        try:
            # Join before reading the state: the members giving devices up hear of
            # this one first, so their last reports are (almost always) in the state.
            if self._membership is not None:
                await self._membership.start()
            loaded_at = time.monotonic()
            self._last = await self._state.load_all()
            down = await self._state.load_down()
            self._loaded = _Loaded(loaded_at, dict(self._last), down)
            self._trackers = {d: self._new_tracker(d, down=True) for d in down}
            await self._client.start()
        except BaseException:
            if self._membership is not None:
                await self._membership.close()
            await self._state.close()
            if self._own_client:
                self._client.close()
            raise
        self._targets = self._build_targets()
        self._started = True
        interval = self._config.interval_seconds
        self._owned = self._ownership()
        # Others are live: this share was theirs a moment ago (their last reports may
        # still be on the way to the state), so it is taken over like any other.
        hold = 0.0
        if self._membership is not None and len(self._membership.members()) > 1:
            hold = self._handover_hold()
            due = time.monotonic() + hold
            self._reload_due.update(dict.fromkeys(self._owned, due))
        for target in self._targets:
            if target.device in self._owned:
                self._start_schedule(target, hold=hold)
        if self._membership is not None:
            self._membership.on_change(self._reshard.set)
            self._reshard_task = asyncio.create_task(self._resharder(), name="poll-reshard")
        log.info(
            "poll_started",
            targets=len(self._targets),
            owned=len(self._owned),
            sharding=self._membership is not None,
            owned_devices=_some(self._owned),
            interval_seconds=interval,
            concurrency=self._config.concurrency,
            known_states=len(self._last),
            known_down=len(down),
        )

    def _new_tracker(self, device: str, *, down: bool = False) -> FailureTracker:
        """A tracker for ``device`` alone, which is down already when ``down``."""
        return FailureTracker(
            self._config.failure_threshold,
            memory=self._memory,
            down=frozenset({device}) if down else frozenset(),
        )

    def _tracker(self, device: str) -> FailureTracker:
        """``device``'s failure tracker (a fresh one the first time)."""
        tracker = self._trackers.get(device)
        if tracker is None:
            tracker = self._trackers[device] = self._new_tracker(device)
        return tracker

    def _start_schedule(self, target: _Target, *, hold: float = 0.0) -> None:
        """Start ``target``'s schedule; its first poll after ``hold`` seconds plus a
        random part of an interval."""
        delay = hold + self._rng.uniform(0, self._config.interval_seconds)
        self._tasks[target.device] = asyncio.create_task(
            self._schedule(target, delay), name=f"poll-{target.device}"
        )

    # ------------------------------------------------------------------ sharding

    def _ownership(self) -> frozenset[str]:
        """The devices this receiver should poll under the current membership."""
        devices = [t.device for t in self._targets]
        membership = self._membership
        if membership is None:
            return frozenset(devices)
        return owned(devices, membership.members(), membership.member_id)

    async def _resharder(self) -> None:
        """After every membership change: stop the devices given up, reload the state of
        the devices taken over (another receiver polled them), start their schedules."""
        while True:
            await self._reshard.wait()
            self._reshard.clear()
            try:
                await self._reshard_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad round end sharding
                log.exception("poll_shard_reshard_failed")

    def _handover_hold(self) -> float:
        """Seconds before the first poll of a device taken over: one heartbeat for
        every previous owner to notice the change, one for its reports under way."""
        membership = self._membership
        return 2 * membership.heartbeat if membership is not None else 0.0

    async def _reshard_once(self) -> None:
        new = self._ownership()
        acquired, released = new - self._owned, self._owned - new
        if not acquired and not released:
            return
        self._owned = new
        stopping = [self._tasks.pop(d) for d in released if d in self._tasks]
        for task in stopping:
            task.cancel()  # a report being published finishes (it is shielded)
        await asyncio.gather(*stopping, return_exceptions=True)
        for device in released:
            # the new owner's word counts now; taken back later, it is read again
            self._trackers.pop(device, None)
            self._last.pop(device, None)
            self._reload_due.pop(device, None)
        hold = self._handover_hold()
        due = time.monotonic() + hold
        for target in self._targets:
            if target.device in acquired:
                self._reload_due[target.device] = due
                self._start_schedule(target, hold=hold)
        await self._drain_released(released)
        self._shard_changes.inc(len(acquired), direction="acquired")
        self._shard_changes.inc(len(released), direction="released")
        members = self._membership.members() if self._membership is not None else frozenset()
        log.info(
            "poll_shard_changed",
            members=len(members),
            owned=len(new),
            targets=len(self._targets),
            acquired=len(acquired),
            released=len(released),
            acquired_devices=_some(acquired),
            released_devices=_some(released),
        )

    async def _drain_released(self, released: frozenset[str]) -> None:
        """Wait (at most one heartbeat) for the reports under way of the devices given
        up, so the new owner, which reads the state ``2 * heartbeat`` after the
        change, finds them there. A slower one goes on (``close`` waits for it)."""
        membership = self._membership
        pending = [t for t, d in self._reports.items() if d in released]
        if not pending or membership is None:
            return
        _, late = await asyncio.wait(pending, timeout=membership.heartbeat)
        if late:
            devices = frozenset(self._reports.get(t, "?") for t in late)
            self._handover_problems.inc(len(late), problem="release_slow")
            log.warning(
                "poll_shard_release_slow",
                reports=len(late),
                devices=_some(devices),
                waited_seconds=membership.heartbeat,
                hint="the new owner may read the state before these reports are saved",
            )

    async def _reload_device(self, device: str) -> None:
        """Right before the first poll of a device taken over: its last snapshot and
        down flag from the state (what the previous owner saved, shared with
        ``store.backend: postgres``), so that poll diffs against the previous
        owner's last one. If the state cannot be read, the first poll is a fresh
        baseline (nothing known here is trusted: it may be stale)."""
        due = self._reload_due.pop(device, None)
        if due is None:
            return
        try:
            loaded = await self._read_state(since=due)
        except StoreError as exc:
            self._handover_problems.inc(problem="reload_failed")
            log.error(
                "poll_shard_state_reload_failed",
                device=device,
                error=str(exc),
                action="first poll is a baseline (no events; a change or device_up "
                "during the handover is missed)",
            )
            self._last.pop(device, None)
            self._trackers[device] = self._new_tracker(device)
            return
        snapshot = loaded.snapshots.get(device)
        if snapshot is not None:
            self._last[device] = snapshot
        else:
            self._last.pop(device, None)
        self._trackers[device] = self._new_tracker(device, down=device in loaded.down)

    async def _read_state(self, *, since: float) -> _Loaded:
        """A read of the whole state begun at ``since`` or later: the last one, the one
        under way, or a new one (shared: a takeover of many devices reads it about
        once, not once per device).

        Raises:
            StoreError: the state cannot be read.
        """
        loaded = self._loaded
        if loaded is not None and loaded.at >= since:
            return loaded
        if self._loading is None or self._loading[0] < since:
            at = time.monotonic()
            task = asyncio.create_task(self._load_state(at), name="poll-state-reload")
            # a failure every waiter already saw must not be reported as "never retrieved"
            task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
            self._loading = (at, task)
        # shielded: one schedule cancelled (its device given up) ends no other's read
        return await asyncio.shield(self._loading[1])

    async def _load_state(self, at: float) -> _Loaded:
        try:
            snapshots = await self._state.load_all()
            down = await self._state.load_down()
        finally:
            if self._loading is not None and self._loading[0] == at:
                self._loading = None
        loaded = _Loaded(at, snapshots, down)
        if self._loaded is None or self._loaded.at < at:
            self._loaded = loaded
        return loaded

    def _build_targets(self) -> list[_Target]:
        cfg = self._config
        out: list[_Target] = []
        for t in cfg.targets:
            v3 = self._v3_users.get(t.v3_user) if t.v3_user is not None else None
            if t.v3_user is not None and v3 is None:
                # Never fall back to v2c: that would leak the community to a v3 device.
                log.warning("poll_target_skipped", device=t.device, reason="unknown_v3_user")
                continue
            community: SecretStr = t.community if t.community is not None else cfg.community
            poll = PollTarget(
                t.host,
                t.port,
                community,
                timeout=cfg.timeout_seconds,
                retries=cfg.retries,
                usm=UsmCredentials.from_config(v3) if v3 is not None else None,
            )
            out.append(_Target(t.device, poll, v3))
        if cfg.inventory and self._memory is not None:
            out.extend(self._inventory_targets(self._memory, out))
        return out

    def _inventory_targets(
        self, memory: SemanticMemory, configured: Sequence[_Target]
    ) -> list[_Target]:
        """Every inventory device with an address that no ``poll.targets`` entry covers.

        A configured entry covers a device when it has the device's name, or its
        host is one of the device's addresses (``poll.targets`` overrides the
        inventory's port and credentials that way).
        """
        cfg = self._config
        names = {t.device for t in configured}
        hosts = {t.poll.host for t in configured}
        for t in configured:
            known = memory.device_by_address(t.poll.host)
            if known is not None:
                names.add(known.name)
        out: list[_Target] = []
        no_address = 0
        for device in memory.devices():
            if device.name in names:
                continue
            host = device.primary_ip or (device.addresses[0] if device.addresses else None)
            if host is None:
                no_address += 1
                continue
            if host in hosts or any(a in hosts for a in device.addresses):
                continue
            poll = PollTarget(
                host,
                cfg.port,
                cfg.community,
                timeout=cfg.timeout_seconds,
                retries=cfg.retries,
            )
            out.append(_Target(device.name, poll))
            names.add(device.name)
            hosts.add(host)
        log.info("poll_inventory_targets", added=len(out), without_address=no_address)
        return out

    async def close(self) -> None:
        """Stop polling, let reports being published finish, close state and client.

        Idempotent; safe without ``start``.
        """
        if self._closed:
            return
        self._closed = True
        if not self._started:
            if self._own_client:
                self._client.close()
            return
        # Each wait is bounded: a close must end even if a task does not (a bug, a read
        # stuck in a thread, a cancel dropped by a wait_for); it is named in the log
        # instead of hanging the engine's stop.
        if self._reshard_task is not None:
            await self._await_cancelled([self._reshard_task])
            self._reshard_task = None
        tasks: list[asyncio.Task[Any]] = list(self._tasks.values())
        if self._loading is not None:
            tasks.append(self._loading[1])
        await self._await_cancelled(tasks)
        self._tasks = {}
        if self._reports:
            _, pending = await asyncio.wait(list(self._reports), timeout=self._drain_timeout)
            if pending:
                log.error("poll_drain_timeout", left=len(pending))
                await self._await_cancelled(list(pending))
        # Leave only now: every report is saved, so whoever takes a device over next
        # starts from its last snapshot.
        if self._membership is not None:
            await self._membership.close()
        if self._own_client:
            self._client.close()
        await self._state.close()
        self._rejections.flush()
        log.info(
            "poll_stopped",
            polls=int(self._received.value(source=SOURCE)),
            failures=int(self._failures.total()),
            published=int(self._published.total()),
            down=sum(len(t.down) for t in self._trackers.values()),
        )

    async def _await_cancelled(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Cancel ``tasks`` (again and again: a state read or a report's publish may
        drop one, see ``netcortex.aio``) and wait at most ``drain_timeout`` for them
        to end; log the ones that did not (``poll_close_stuck``) instead of waiting
        for ever."""
        await stop_tasks(
            tasks,
            timeout=self._drain_timeout,
            what="poll receiver tasks",
            logger=log,
            event="poll_close_stuck",
        )

    async def __aenter__(self) -> PollReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ schedule

    async def _schedule(self, target: _Target, first_delay: float) -> None:
        """Poll ``target`` forever: every interval (backed off while failing) ± jitter,
        measured start to start."""
        jitter = self._config.jitter
        loop = asyncio.get_running_loop()
        next_at = loop.time() + first_delay
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            try:
                if target.device in self._reload_due:  # taken over: read its state first
                    await self._reload_device(target.device)
                answered = await self._poll(target)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one device's bug end its schedule
                log.exception("poll_crashed", device=target.device)
                answered = False
            step = self._backoff(target, answered) * (1 + self._rng.uniform(-jitter, jitter))
            # A poll longer than the interval skips the missed cycles, never bunches them.
            next_at = max(started + step, loop.time())

    def _backoff(self, target: _Target, answered: bool) -> float:
        """The pause before ``target``'s next poll, start to start (before jitter).

        The interval after a success (``answered``; also when its ``device_up``
        could not be published and the tracker counts the outage's failures
        again); after ``n`` consecutive failed polls ``interval * 2**(n-1)``,
        capped at ``interval * poll.max_backoff_factor``.
        """
        interval = self._config.interval_seconds
        failed = self._tracker(target.device).failures(target.device)
        if answered or failed <= 1:
            return interval
        cap = self._config.max_backoff_factor
        # Past the cap the exponent no longer matters (and must not overflow).
        return interval * (cap if failed > 64 else min(2.0 ** (failed - 1), cap))

    async def _poll(self, target: _Target) -> bool:
        """Poll ``target`` once and report what changed; ``True`` when it answered."""
        t0 = time.perf_counter()
        async with self._limit:
            self._in_progress += 1
            try:
                snapshot = await self._read(target)
            except PollTimeout as exc:
                failure: tuple[str, str, dict[str, str]] | None = ("timeout", str(exc), {})
            except AgentError as exc:
                failure = ("agent_error", str(exc), {"status": exc.status})
            except PollAuthError as exc:  # SNMPv3: wrong key, unknown user, ...
                failure = ("auth_error", str(exc), {"usm_reason": exc.reason})
            except PollError as exc:
                failure = ("poll_error", str(exc), {})
            else:
                failure = None
            finally:
                self._in_progress -= 1
                self._duration.observe(time.perf_counter() - t0)
        if failure is not None:
            await self._failed(target, *failure)
            return False
        self._received.inc(source=SOURCE)
        events: list[SensoryEvent] = []
        tracker = self._tracker(target.device)
        undo = tracker.checkpoint(target.device)
        up = tracker.success(target.device, target.poll.host, snapshot.polled_at)
        if up is not None:
            log.info("poll_device_up", device=target.device, agent=target.poll.host)
            events.append(up)
        events.extend(diff(self._last.get(target.device), snapshot, memory=self._memory))
        # which receiver polled which device, for the sharding checks (debug level only)
        log.debug("poll_done", device=target.device, events=len(events))
        await self._report(
            target.device,
            self._commit(
                target.device,
                events,
                snapshot,
                down=False if up is not None else None,
                undo=undo,
            ),
        )
        return True

    async def _failed(
        self, target: _Target, reason: str, detail: str, fields: dict[str, str]
    ) -> None:
        self._failures.inc(reason=reason)
        self._rejections.reject(
            target.device, reason, agent=target.poll.address, detail=detail, **fields
        )
        tracker = self._tracker(target.device)
        undo = tracker.checkpoint(target.device)
        down = tracker.failure(target.device, target.poll.host, datetime.now(UTC), reason=reason)
        if down is None:
            return
        log.warning(
            "poll_device_down",
            device=target.device,
            agent=target.poll.host,
            consecutive_failures=tracker.failures(target.device),
            reason=reason,
        )
        await self._report(
            target.device, self._commit(target.device, [down], None, down=True, undo=undo)
        )

    async def _report(self, device: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` (``device``'s publish + save) in a task ``close`` (and a reshard
        giving the device up) waits for, and wait for it.

        The schedule waits for its report (one poll's report lands before the
        next poll's diff), but cancelling the schedule does not cancel the report.
        """
        task = asyncio.create_task(coro)
        self._reports[task] = device
        task.add_done_callback(self._forget_report)
        await asyncio.shield(task)

    def _forget_report(self, task: asyncio.Task[None]) -> None:
        self._reports.pop(task, None)

    async def _commit(
        self,
        device: str,
        events: list[SensoryEvent],
        snapshot: DeviceSnapshot | None,
        *,
        down: bool | None,
        undo: Callable[[], None],
    ) -> None:
        """Publish ``events``, then store what they reported (never the other way round).

        If any of them was not published (a bus outage past its budget, a refusal)
        nothing is stored and the baseline stays: the snapshot is not saved nor
        made ``_last``, the down flag not set, and ``undo`` takes back the
        tracker's ``device_down`` / ``device_up``. The next poll diffs against the
        same baseline and reports the change again (at least once: the events of
        this report that did get out are published again too, with new ids; the
        reflex dedup window absorbs them).
        """
        unpublished = [event for event in events if not await self._publish(event)]
        if unpublished:
            undo()
            self._deferred.inc()
            log.warning(
                "poll_report_deferred",
                device=device,
                events=len(events),
                unpublished=len(unpublished),
                event_classes=sorted({event.event_class for event in events}),
                action="baseline kept: the next poll reports these changes again",
            )
            return
        try:
            if snapshot is not None:
                await self._state.save(snapshot)
            if down is not None:
                await self._state.set_down(device, down)
        except StoreError as exc:
            log.error("poll_state_save_failed", device=device, error=str(exc))
        if snapshot is not None and device in self._owned:  # not if given up meanwhile
            self._last[device] = snapshot

    async def _publish(self, event: SensoryEvent) -> bool:
        return await publish_event(
            self._bus,
            event,
            what="poll",
            published=self._published,
            failed=self._publish_failed,
            logger=log,
            outage=self._outage,
        )

    # ------------------------------------------------------------------ SNMP

    async def _read(self, target: _Target) -> DeviceSnapshot:
        """One poll of ``target`` → its snapshot.

        Raises:
            PollError: any request failed (``PollTimeout``, ``AgentError``), or the
                agent has no sysUpTime.0.
        """
        client, poll = self._client, target.poll
        (uptime,) = await client.get(poll, [SYS_UPTIME])
        if not isinstance(uptime.value, int) or isinstance(uptime.value, bool):
            raise AgentError(
                f"agent {poll.address} has no sysUpTime.0 ({uptime.type})",
                target=poll.address,
                status="noSysUpTime",
            )
        walks = [IF_OPER_STATUS, IF_ADMIN_STATUS, IF_NAME, IF_DESCR, IF_LAST_CHANGE]
        results = await asyncio.gather(*(client.bulk_walk(poll, oid) for oid in walks))
        oper, admin, names, descrs, changes = (
            _column(root, vbs) for root, vbs in zip(walks, results, strict=True)
        )
        interfaces: dict[int, InterfaceState] = {}
        for index, status in oper.items():
            if not isinstance(status, int):
                continue
            adm = admin.get(index)
            last = changes.get(index)
            interfaces[index] = InterfaceState(
                if_index=index,
                name=_text(names.get(index)),
                descr=_text(descrs.get(index)),
                admin_status=adm if isinstance(adm, int) else 1,
                oper_status=status,
                last_change=last if isinstance(last, int) else None,
            )
        bgp: dict[str, BgpPeerState] = {}
        if self._config.bgp:
            bgp4, cisco = await asyncio.gather(self._read_bgp(target), self._read_cbgp(target))
            bgp = {**bgp4, **cisco}  # a peer in both: cbgpPeer2State wins
        return DeviceSnapshot(
            device=target.device,
            agent=poll.host,
            sys_uptime_ticks=uptime.value,
            interfaces=interfaces,
            bgp=bgp,
            polled_at=datetime.now(UTC),
        )

    async def _read_bgp(self, target: _Target) -> dict[str, BgpPeerState]:
        """bgpPeerTable rows by remote address; empty for an agent without BGP4-MIB."""
        try:
            states, addrs = await asyncio.gather(
                self._client.bulk_walk(target.poll, BGP_PEER_STATE),
                self._client.bulk_walk(target.poll, BGP_PEER_REMOTE_ADDR),
            )
        except AgentError as exc:
            # A v1-style noSuchName or an access refusal for BGP4-MIB: no BGP here.
            log.debug("poll_bgp_unavailable", device=target.device, status=exc.status)
            return {}
        remote = _column_by_suffix(BGP_PEER_REMOTE_ADDR, addrs)
        out: dict[str, BgpPeerState] = {}
        for suffix, state in _column_by_suffix(BGP_PEER_STATE, states).items():
            if not isinstance(state, int):
                continue
            addr = remote.get(suffix)
            address = addr if isinstance(addr, str) and addr else suffix
            out[address] = BgpPeerState(address, state)
        return out

    async def _read_cbgp(self, target: _Target) -> dict[str, BgpPeerState]:
        """CISCO-BGP4-MIB cbgpPeer2State rows by remote address (IPv4 and IPv6 peers);
        empty for an agent without that MIB."""
        try:
            states = await self._client.bulk_walk(target.poll, CBGP_PEER2_STATE)
        except AgentError as exc:
            log.debug("poll_cbgp_unavailable", device=target.device, status=exc.status)
            return {}
        out: dict[str, BgpPeerState] = {}
        for suffix, state in _column_by_suffix(CBGP_PEER2_STATE, states).items():
            address = _inet_address(suffix)
            if address is None or not isinstance(state, int) or isinstance(state, bool):
                continue
            out[address] = BgpPeerState(address, state)
        return out


def _some(devices: frozenset[str], limit: int = 20) -> list[str]:
    """Up to ``limit`` of ``devices``, sorted, for a log line (the count is logged too)."""
    return sorted(devices)[:limit]


def _inet_address(suffix: str) -> str | None:
    """A cbgpPeer2Table index (``InetAddressType.length.octets``) → canonical address text.

    ``1.4.192.0.2.1`` → ``192.0.2.1``; ``2.16.32.1.13.184.0...1`` → ``2001:db8::1``;
    ``None`` for any other type or a malformed index.
    """
    try:
        arcs = [int(p) for p in suffix.split(".")]
    except ValueError:
        return None
    if len(arcs) < 2 or arcs[1] != len(arcs) - 2 or any(not 0 <= a <= 255 for a in arcs[2:]):
        return None
    kind, octets = arcs[0], bytes(arcs[2:])
    if kind == _INET_IPV4 and len(octets) == 4:
        return str(ipaddress.IPv4Address(octets))
    if kind == _INET_IPV6 and len(octets) == 16:
        return str(ipaddress.IPv6Address(octets))
    return None


def _column(root: str, varbinds: list[VarBind]) -> dict[int, int | bytes | str | None]:
    """A walked column of a table indexed by one integer (ifIndex) → {index: value}."""
    prefix = root + "."
    out: dict[int, int | bytes | str | None] = {}
    for vb in varbinds:
        suffix = vb.oid[len(prefix) :] if vb.oid.startswith(prefix) else ""
        if suffix.isdigit():
            out[int(suffix)] = vb.value
    return out


def _column_by_suffix(root: str, varbinds: list[VarBind]) -> dict[str, int | bytes | str | None]:
    """A walked column → {index suffix (dotted text): value}."""
    prefix = root + "."
    return {vb.oid[len(prefix) :]: vb.value for vb in varbinds if vb.oid.startswith(prefix)}


def _text(value: int | bytes | str | None) -> str | None:
    """An OctetString column value as text (``None`` when absent or empty)."""
    if isinstance(value, bytes):
        text = value.rstrip(b"\x00").decode("utf-8", errors="replace").strip()
        return text or None
    if isinstance(value, str):
        return value or None
    return None
