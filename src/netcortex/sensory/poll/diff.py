"""Sensory / poll: two snapshots of a device → ``SensoryEvent`` objects (pure CPU, no I/O).

``diff(previous, current)`` compares what one poll saw with what the one before
saw and names the changes with the trap receiver's vocabulary, so a poll-seen and
a trap-seen change of one interface or BGP session are one fact (same
``event_class|target`` dedup key, same payload keys):

* ``previous is None`` (the first poll ever, nothing stored): the baseline; no event.
* ifOperStatus leaving ``up(1)`` → ``link_down``; entering ``up(1)`` → ``link_up``.
  Moves between two not-up states (``down`` → ``lowerLayerDown``) are no event.
  Every link event carries ``admin_down`` (``True`` when ifAdminStatus is not
  ``up``: an operator shut the port, which is not a fault).
* bgpPeerState leaving ``established(6)`` → ``bgp_backward_transition``; entering
  it → ``bgp_established``; moves between the other states are no event.
* sysUpTime lower than before → ``device_reboot`` (unless it is the 2^32 TimeTicks
  wrap after 497 days, recognised from the time between the polls).
* Rows are matched by ifIndex (interfaces) and remote address (peers). A row
  that appears is a new baseline (no event: nothing says it was ever up); a
  row that vanishes is no event (a removed interface or deconfigured peer is
  not a fault, and a partial walk must not invent one). An ifIndex whose ifName
  changed (re-numbered after a reboot) is a different interface: a new baseline.

``FailureTracker`` turns poll outcomes into reachability: ``threshold``
consecutive failures → one ``device_down``, the first success after it →
``device_up``.

Targets are canonicalised like ``sensory.trap.normalize.Normalizer`` does: with
semantic memory the agent address (or the poller's device name) becomes the
inventory device name and the ifIndex / ifName / ifDescr the inventory interface
name; without it the device is the agent address and the interface its ifName
(else ifDescr, else ``ifIndex=<n>``). The payload says which in ``inventory``.

Imports: stdlib, netcortex.contracts, netcortex.thalamus.subjects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

from netcortex.contracts.events import SensoryEvent, new_event_id
from netcortex.contracts.memory import SemanticMemory
from netcortex.thalamus.subjects import bounded_part, sensory_subject

__all__ = [
    "BGP_ESTABLISHED",
    "IF_STATUS_DOWN",
    "IF_STATUS_UP",
    "SOURCE",
    "BgpPeerState",
    "DeviceSnapshot",
    "FailureTracker",
    "InterfaceState",
    "diff",
]

#: ``SensoryEvent.source`` of every poll event.
SOURCE: Final = "snmp.poll"

#: IF-MIB ifAdminStatus / ifOperStatus values.
IF_STATUS_UP: Final = 1
IF_STATUS_DOWN: Final = 2
#: BGP4-MIB bgpPeerState ``established``.
BGP_ESTABLISHED: Final = 6

_BGP_STATES: Final = {
    1: "idle",
    2: "connect",
    3: "active",
    4: "opensent",
    5: "openconfirm",
    6: "established",
}
_IF_STATUSES: Final = {
    1: "up",
    2: "down",
    3: "testing",
    4: "unknown",
    5: "dormant",
    6: "notPresent",
    7: "lowerLayerDown",
}
#: sysUpTime / ifLastChange are TimeTicks (hundredths of a second) modulo 2^32.
_TICKS_MOD: Final = 2**32
#: Same as the trap normaliser: an interface token longer than this is shortened.
_MAX_TOKEN: Final = 512


@dataclass(frozen=True, slots=True)
class InterfaceState:
    """One ifTable/ifXTable row as polled.

    Attributes:
        if_index: ifIndex.
        name: ifName, ``None`` when the agent has no ifXTable.
        descr: ifDescr, if any.
        admin_status: ifAdminStatus (1 up, 2 down, 3 testing).
        oper_status: ifOperStatus (1 up, 2 down, ... 7 lowerLayerDown).
        last_change: ifLastChange in TimeTicks, if read.
    """

    if_index: int
    name: str | None
    descr: str | None
    admin_status: int
    oper_status: int
    last_change: int | None = None


@dataclass(frozen=True, slots=True)
class BgpPeerState:
    """One BGP peer as polled (bgpPeerTable or cbgpPeer2Table).

    Attributes:
        remote_addr: the peer's address (canonical text form), the row's key.
        state: bgpPeerState (1 idle ... 6 established).
    """

    remote_addr: str
    state: int


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """Everything one successful poll of one device saw.

    Attributes:
        device: the poller's name for the device (inventory name or a
            ``poll.targets`` entry); the key of the stored state.
        agent: the address polled (the event's ``agent``).
        sys_uptime_ticks: sysUpTime.0 in TimeTicks.
        interfaces: ifIndex → row. Read-only.
        bgp: remote address → peer. Read-only.
        polled_at: when the answer arrived (timezone-aware).

    Raises:
        ValueError: ``polled_at`` is naive, or a mapping key differs from its
            row's ifIndex / remote address.
    """

    device: str
    agent: str
    sys_uptime_ticks: int
    interfaces: Mapping[int, InterfaceState] = field(default_factory=dict)
    bgp: Mapping[str, BgpPeerState] = field(default_factory=dict)
    polled_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.polled_at.tzinfo is None:
            raise ValueError("polled_at must be timezone-aware (UTC)")
        for index, itf in self.interfaces.items():
            if index != itf.if_index:
                raise ValueError(f"interfaces key {index} holds ifIndex {itf.if_index}")
        for addr, peer in self.bgp.items():
            if addr != peer.remote_addr:
                raise ValueError(f"bgp key {addr!r} holds peer {peer.remote_addr!r}")
        if not isinstance(self.interfaces, MappingProxyType):
            object.__setattr__(self, "interfaces", MappingProxyType(dict(self.interfaces)))
        if not isinstance(self.bgp, MappingProxyType):
            object.__setattr__(self, "bgp", MappingProxyType(dict(self.bgp)))


@lru_cache(maxsize=16_384)
def _subject(event_class: str, device: str, second: str | None) -> str:
    if second is None:
        return sensory_subject(SOURCE, event_class, device)
    return sensory_subject(SOURCE, event_class, device, second)


class _Canon:
    """The trap normaliser's canonicalisation, for polled devices."""

    __slots__ = ("_memory",)

    def __init__(self, memory: SemanticMemory | None) -> None:
        self._memory = memory

    def device(self, device: str, agent: str) -> tuple[str, str | None]:
        """Canonical device token and the ``inventory`` flag (``None`` without memory)."""
        memory = self._memory
        if memory is None:
            return agent, None
        dev = memory.device_by_address(agent.partition("%")[0]) or memory.device_by_name(device)
        if dev is None:
            return agent, "unknown"
        return dev.name, "device"

    def interface(self, device: str, known: bool, itf: InterfaceState) -> tuple[str, bool]:
        """Interface token, and whether the inventory knows it."""
        if known and self._memory is not None:
            found = self._memory.interface(device, if_index=itf.if_index)
            if found is None:
                for name in (itf.name, itf.descr):
                    if name:
                        found = self._memory.interface(device, name=name)
                        if found is not None:
                            break
            if found is not None:
                return found.name, True
        raw = itf.name or itf.descr
        if raw:
            return bounded_part(raw, _MAX_TOKEN), False
        return f"ifIndex={itf.if_index}", False


def _event(
    event_class: str,
    device: str,
    second: str | None,
    agent: str,
    observed_at: datetime,
    received_at: datetime,
    payload: dict[str, Any],
    peer: str | None = None,
    interface: str | None = None,
) -> SensoryEvent:
    return SensoryEvent(
        id=new_event_id(),
        subject=_subject(event_class, device, second),
        event_class=event_class,
        source=SOURCE,
        target=device if second is None else f"{device}|{second}",
        device=device,
        interface=interface,
        peer=peer,
        agent=agent,
        observed_at=observed_at,
        received_at=received_at,
        payload=payload,
    )


def _is_wrap(previous: DeviceSnapshot, current: DeviceSnapshot) -> bool:
    """True when a lower sysUpTime is the 2^32 TimeTicks wrap, not a restart."""
    elapsed = (current.polled_at - previous.polled_at).total_seconds() * 100
    if elapsed <= 0:
        return False
    slack = elapsed * 0.1 + 6000  # clock drift and poll latency: 10 % + 60 s
    expected = previous.sys_uptime_ticks + elapsed
    return expected + slack >= _TICKS_MOD and current.sys_uptime_ticks <= elapsed + slack


def _change_time(
    previous: DeviceSnapshot, current: DeviceSnapshot, last_change: int | None
) -> datetime:
    """When ifLastChange says the interface changed, if that lies between the polls."""
    if last_change is None or not 0 <= last_change <= current.sys_uptime_ticks:
        return current.polled_at
    at = current.polled_at - timedelta(seconds=(current.sys_uptime_ticks - last_change) / 100)
    return at if previous.polled_at <= at <= current.polled_at else current.polled_at


def _interface_payload(itf: InterfaceState, prev: InterfaceState) -> dict[str, Any]:
    payload: dict[str, Any] = {"if_index": itf.if_index}
    if itf.name is not None:
        payload["if_name"] = itf.name
    if itf.descr is not None:
        payload["if_descr"] = itf.descr
    payload["if_admin_status"] = itf.admin_status
    payload["if_oper_status"] = itf.oper_status
    payload["if_prev_oper_status"] = prev.oper_status
    for key, value in (
        ("if_admin_status_name", itf.admin_status),
        ("if_oper_status_name", itf.oper_status),
        ("if_prev_oper_status_name", prev.oper_status),
    ):
        if value in _IF_STATUSES:
            payload[key] = _IF_STATUSES[value]
    payload["admin_down"] = itf.admin_status != IF_STATUS_UP
    if itf.last_change is not None:
        payload["if_last_change"] = itf.last_change
    return payload


def _same_interface(prev: InterfaceState, cur: InterfaceState) -> bool:
    return not (prev.name and cur.name and prev.name != cur.name)


def diff(
    previous: DeviceSnapshot | None,
    current: DeviceSnapshot,
    *,
    memory: SemanticMemory | None = None,
) -> list[SensoryEvent]:
    """The events that turn ``previous`` into ``current`` (see the module docstring).

    Order: ``device_reboot`` first, then interfaces by ifIndex, then peers by address.

    Args:
        previous: the last known snapshot of the same device, ``None`` for none
            (then ``current`` is the baseline and nothing is reported).
        current: what the poll just saw.
        memory: canonicalises device and interface names when given.
    """
    if previous is None:
        return []
    canon = _Canon(memory)
    device, inventory = canon.device(current.device, current.agent)
    agent = current.agent
    now = current.polled_at
    events: list[SensoryEvent] = []

    def base() -> dict[str, Any]:
        payload: dict[str, Any] = {"poll_device": current.device}
        if inventory is not None:
            payload["inventory"] = inventory
        return payload

    if current.sys_uptime_ticks < previous.sys_uptime_ticks and not _is_wrap(previous, current):
        payload = base()
        payload["uptime"] = current.sys_uptime_ticks
        payload["previous_uptime"] = previous.sys_uptime_ticks
        booted = now - timedelta(seconds=current.sys_uptime_ticks / 100)
        booted = max(booted, min(previous.polled_at, now))
        events.append(_event("device_reboot", device, None, agent, booted, now, payload))

    for index in sorted(current.interfaces):
        cur = current.interfaces[index]
        prev = previous.interfaces.get(index)
        if prev is None or not _same_interface(prev, cur):
            continue
        was_up = prev.oper_status == IF_STATUS_UP
        is_up = cur.oper_status == IF_STATUS_UP
        if was_up == is_up:
            continue
        event_class = "link_up" if is_up else "link_down"
        name, known = canon.interface(device, inventory is not None and inventory != "unknown", cur)
        payload = base()
        if inventory is not None:
            payload["inventory"] = "device+interface" if known else inventory
        payload.update(_interface_payload(cur, prev))
        events.append(
            _event(
                event_class,
                device,
                name,
                agent,
                _change_time(previous, current, cur.last_change),
                now,
                payload,
                interface=name,
            )
        )

    for addr in sorted(current.bgp):
        cur_peer = current.bgp[addr]
        prev_peer = previous.bgp.get(addr)
        if prev_peer is None:
            continue
        was_est = prev_peer.state == BGP_ESTABLISHED
        is_est = cur_peer.state == BGP_ESTABLISHED
        if was_est == is_est:
            continue
        event_class = "bgp_established" if is_est else "bgp_backward_transition"
        payload = base()
        payload["bgp_remote_addr"] = addr
        payload["bgp_state"] = cur_peer.state
        payload["bgp_prev_state"] = prev_peer.state
        for key, value in (("bgp_state", cur_peer.state), ("bgp_prev_state", prev_peer.state)):
            if value in _BGP_STATES:
                payload[key + "_name"] = _BGP_STATES[value]
        payload["bgp_peer"] = addr
        events.append(_event(event_class, device, addr, agent, now, now, payload, peer=addr))
    return events


@dataclass(slots=True)
class _Failures:
    count: int = 0
    first_at: datetime | None = None
    down: bool = False


class FailureTracker:
    """Reachability from poll results: N consecutive failures → ``device_down``, then ``device_up``.

    Pure state, no I/O, one per poller (not thread-safe). A device's first
    ``threshold - 1`` failures are silent; the ``threshold``-th yields one
    ``device_down``; further failures yield nothing; the first success after a
    ``device_down`` yields one ``device_up`` and starts counting afresh. A
    success before the threshold just resets the count. ``checkpoint`` takes
    back a ``device_down`` / ``device_up`` that could not be reported (the
    next poll yields it again).

    Args:
        threshold: consecutive failures that make a device down (at least 1).
        memory: canonicalises device names as ``diff`` does.
        down: devices already known to be down (restored from durable state, so
            a restart neither re-announces nor forgets an outage).

    Raises:
        ValueError: ``threshold`` is below 1.
    """

    def __init__(
        self,
        threshold: int = 3,
        *,
        memory: SemanticMemory | None = None,
        down: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self._threshold = threshold
        self._canon = _Canon(memory)
        self._state: dict[str, _Failures] = {d: _Failures(down=True) for d in down}

    @property
    def down(self) -> frozenset[str]:
        """The devices currently considered down (by poller name)."""
        return frozenset(d for d, s in self._state.items() if s.down)

    def failures(self, device: str) -> int:
        """Consecutive failures of ``device`` counted so far (0 after a success)."""
        state = self._state.get(device)
        return 0 if state is None else state.count

    def failure(
        self, device: str, agent: str, at: datetime, *, reason: str | None = None
    ) -> SensoryEvent | None:
        """Record one failed poll; the ``device_down`` event when it crosses the threshold.

        Args:
            device: the poller's name for the device.
            agent: the address polled.
            at: when the poll failed (timezone-aware).
            reason: a short cause (``timeout``, an error class); never a secret.
        """
        state = self._state.setdefault(device, _Failures())
        state.count += 1
        if state.first_at is None:
            state.first_at = at
        if state.down or state.count < self._threshold:
            return None
        state.down = True
        name, inventory = self._canon.device(device, agent)
        payload: dict[str, Any] = {
            "poll_device": device,
            "consecutive_failures": state.count,
            "first_failure_at": state.first_at.isoformat(),
        }
        if reason is not None:
            payload["reason"] = reason
        if inventory is not None:
            payload["inventory"] = inventory
        return _event("device_down", name, None, agent, state.first_at, at, payload)

    def checkpoint(self, device: str) -> Callable[[], None]:
        """Remember whether ``device`` is reported down now; the result puts that back.

        Call it before a poll's ``failure`` / ``success``, and the result when that
        poll's report could not be published: a ``device_down`` it yielded is taken
        back (the failures stay counted, so the next failure yields it again), a
        ``device_up`` too (the outage, its first failure and its count are restored,
        so the next success yields it again, with the same payload). Whatever did
        not change what was reported (a count moving below the threshold, a success
        of a device that was not down) is kept.
        """
        before = self._state.get(device)
        saved = replace(before) if before is not None and before.down else None

        def restore() -> None:
            state = self._state.get(device)
            if saved is not None:
                if state is None or not state.down:  # a device_up taken back
                    self._state[device] = replace(saved)
            elif state is not None and state.down:  # a device_down taken back
                state.down = False

        return restore

    def success(self, device: str, agent: str, at: datetime) -> SensoryEvent | None:
        """Record one successful poll; the ``device_up`` event when the device was down."""
        state = self._state.pop(device, None)
        if state is None or not state.down:
            return None
        name, inventory = self._canon.device(device, agent)
        payload: dict[str, Any] = {"poll_device": device, "consecutive_failures": state.count}
        if state.first_at is not None:
            payload["first_failure_at"] = state.first_at.isoformat()
        if inventory is not None:
            payload["inventory"] = inventory
        return _event("device_up", name, None, agent, at, at, payload)
