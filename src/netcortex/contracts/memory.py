"""Contracts: memory Protocols (stdlib only, no I/O).

* episodic: ``OutcomeStore`` and ``OutcomeQuery``;
* semantic: ``SemanticMemory`` (devices, interfaces, cables, BGP sessions);
* ``DedupStore``: shared "seen this fact within its window" state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome

__all__ = [
    "MAINTENANCE_SCOPES",
    "BgpSession",
    "DedupResult",
    "DedupStore",
    "Device",
    "Interface",
    "MaintenanceCalendar",
    "MaintenanceWindow",
    "OutcomeCursor",
    "OutcomeQuery",
    "OutcomeStore",
    "SemanticMemory",
]


@dataclass(frozen=True, slots=True)
class OutcomeCursor:
    """A position in the newest-first order of outcomes (for cursor pagination).

    The order is ``recorded_at`` descending, then ``outcome_id`` descending: a
    total order, so a page boundary never skips or repeats an outcome even when
    many share one ``recorded_at``. The cursor of a page is its last outcome's
    ``(recorded_at, outcome_id)``.
    """

    recorded_at: datetime
    outcome_id: str

    @classmethod
    def after(cls, outcome: ReflexOutcome) -> OutcomeCursor:
        """The cursor that continues after ``outcome`` (the last one of a page)."""
        return cls(outcome.recorded_at, outcome.outcome_id)


@dataclass(frozen=True, slots=True)
class OutcomeQuery:
    """Filters for ``OutcomeStore.query``; ``None`` means "any".

    Attributes:
        since, until: ``recorded_at`` range, inclusive ``since``, exclusive ``until``.
        handler_id, device, site: exact matches.
        severity: exact severities to include.
        kind: exact kinds to include.
        before: only outcomes strictly after this cursor in the newest-first
            order (the next page).
        limit: at most this many rows, newest first (``recorded_at`` descending,
            then ``outcome_id`` descending).
    """

    since: datetime | None = None
    until: datetime | None = None
    handler_id: str | None = None
    severity: Sequence[Severity] | None = None
    kind: Sequence[OutcomeKind] | None = None
    device: str | None = None
    site: str | None = None
    before: OutcomeCursor | None = None
    limit: int = 100


class OutcomeStore(Protocol):
    """Durable record of ``ReflexOutcome``s (episodic memory).

    Writes are idempotent on ``outcome_id`` (a re-delivered event never makes a
    second row). Implementations batch writes; ``record`` may return before the
    row is durable, ``flush`` returns when everything recorded so far is. Safe to
    call from many tasks at once.
    """

    async def start(self) -> None:
        """Open the store, create the schema. Raises ``StoreError``."""
        ...

    async def close(self) -> None:
        """Flush and close. Idempotent; safe without ``start``."""
        ...

    async def record(self, outcome: ReflexOutcome) -> None:
        """Queue one outcome for writing (bounded latency, batched).

        Raises:
            netcortex.errors.StoreError: the store is closed or failing.
        """
        ...

    async def flush(self) -> None:
        """Return when every outcome recorded before the call is durable.

        Raises:
            netcortex.errors.StoreError: the write failed.
        """
        ...

    async def query(self, query: OutcomeQuery) -> list[ReflexOutcome]:
        """Return outcomes matching ``query``, newest ``recorded_at`` first.

        Raises:
            netcortex.errors.StoreError: the read failed.
        """
        ...

    async def get(self, outcome_id: str) -> ReflexOutcome | None:
        """Return one outcome by id, or ``None``."""
        ...

    async def prune(self, now: datetime | None = None) -> int:
        """Delete outcomes older than the store's retention (in small batches);
        return how many went. Retention 0 keeps everything (returns 0).

        Raises:
            netcortex.errors.StoreError: not open, read-only, a naive ``now``, or
                the delete failed.
        """
        ...

    async def ping(self) -> None:
        """Return when the store is open and accepts writes (readiness probes).

        Raises:
            netcortex.errors.StoreError: not started, closed, or not writable,
                with the reason.
        """
        ...


# ----------------------------------------------------------------- semantic memory


@dataclass(frozen=True, slots=True)
class Device:
    """A device as the inventory knows it.

    Attributes:
        name: the inventory name (NetBox ``name``), the canonical device token.
        site: site slug (``dc-north``), if any.
        role: device role slug (``router``, ``switch``), if any.
        serial: serial number, if any (Meraki webhooks match on it).
        primary_ip: primary address without prefix length, if any.
        addresses: every address assigned to the device (no prefix length).
        tags: tag slugs.
        platform: platform slug, if any.
        inventory_id: the inventory's own id (NetBox ``id``), if any.
    """

    name: str
    site: str | None = None
    role: str | None = None
    serial: str | None = None
    primary_ip: str | None = None
    addresses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    platform: str | None = None
    inventory_id: int | None = None


@dataclass(frozen=True, slots=True)
class Interface:
    """An interface of a device.

    Attributes:
        device: the device's ``name``.
        name: the interface name (NetBox ``name``, usually ifDescr such as
            ``GigabitEthernet1/0/3``).
        if_index: SNMP ifIndex (NetBox custom field ``snmp_ifindex``), if known.
        mac: MAC address, lower-case colon form, if any.
        description: free text, if any.
        inventory_id: the inventory's own id, if any.
    """

    device: str
    name: str
    if_index: int | None = None
    mac: str | None = None
    description: str | None = None
    inventory_id: int | None = None


@dataclass(frozen=True, slots=True)
class BgpSession:
    """A BGP session (netbox-bgp plugin), seen from ``device``."""

    device: str
    local_address: str | None
    remote_address: str
    local_asn: int | None = None
    remote_asn: int | None = None
    name: str | None = None
    inventory_id: int | None = None


class SemanticMemory(Protocol):
    """What the network is: devices, interfaces, cables, BGP sessions.

    Every lookup is synchronous and answered from in-memory indexes (dict hits,
    no I/O): receivers and gates call them per event. Implementations refresh
    their snapshot in the background (stale-while-revalidate); a lookup never
    waits for a refresh. Names are matched exactly; addresses are compared in
    canonical form (``ipaddress``); MACs in any common spelling.
    """

    async def start(self) -> None:
        """Load the first snapshot (a full sync).

        Raises:
            netcortex.errors.StoreError: the source cannot be read at all (file
                missing or invalid, NetBox unreachable or refusing the token).
        """
        ...

    async def close(self) -> None:
        """Stop refreshing. Idempotent; safe without ``start``."""
        ...

    def devices(self) -> Sequence[Device]:
        """Every device in the snapshot in use, in inventory order (empty before
        the first load). A copy: later refreshes do not change it."""
        ...

    def device_by_address(self, address: str) -> Device | None:
        """The device owning ``address`` (any assigned IP, v4 or v6), or ``None``."""
        ...

    def device_by_name(self, name: str) -> Device | None:
        """The device called ``name``, or ``None``."""
        ...

    def device_by_serial(self, serial: str) -> Device | None:
        """The device with serial number ``serial``, or ``None``."""
        ...

    def device_by_mac(self, mac: str) -> Device | None:
        """The device having an interface with MAC ``mac``, or ``None``."""
        ...

    def interface(
        self, device: str, *, if_index: int | None = None, name: str | None = None
    ) -> Interface | None:
        """The interface of ``device`` by ifIndex, or by name (full, or the short
        form such as ``Gi1/0/3`` for ``GigabitEthernet1/0/3``), or ``None``."""
        ...

    def cable_peer(self, device: str, interface: str) -> Interface | None:
        """The interface at the far end of the cable on ``device`` / ``interface``."""
        ...

    def bgp_session(self, device: str, remote_address: str) -> BgpSession | None:
        """The session of ``device`` towards ``remote_address``, or ``None``."""
        ...

    def snapshot_age(self) -> float:
        """Seconds since the snapshot in use was taken (``inf`` before the first)."""
        ...


# ----------------------------------------------------------------------------- dedup


@dataclass(frozen=True, slots=True)
class DedupResult:
    """What ``DedupStore.seen`` found.

    Attributes:
        first: ``True`` when this call created the fact (the event is new).
        first_event_id: the id of the event that created the fact.
        count: events that reported the fact within its window, this one
            included (1 for the first): the corroboration count.
    """

    first: bool
    first_event_id: str
    count: int


class DedupStore(Protocol):
    """Shared "has this fact been seen within its window?" state.

    ``seen`` is atomic: of many concurrent calls for one new key exactly one
    gets ``first=True`` (an atomic create). A key expires ``window`` seconds
    after it was created (duplicates do not extend it); the next event after
    that is first again. Safe from many tasks (and, for shared backends, from
    many processes).
    """

    async def start(self) -> None:
        """Connect or create the state.

        Raises:
            netcortex.errors.BusUnavailable: the shared backend cannot be reached.
        """
        ...

    async def close(self) -> None:
        """Release resources. Idempotent; safe without ``start``."""
        ...

    async def seen(self, key: str, window: float, event_id: str) -> DedupResult:
        """Record one event reporting fact ``key``; say whether it is the first.

        Args:
            key: ``event_class|canonical target`` (any string; backends encode it).
            window: seconds the fact stays seen after its first event (> 0).
            event_id: the reporting event's id.

        Raises:
            netcortex.errors.StoreError: the shared state cannot be read or written.
        """
        ...


# ----------------------------------------------------------------------- maintenance

#: What a maintenance window can cover.
MAINTENANCE_SCOPES: frozenset[str] = frozenset({"device", "interface", "site", "role", "tag"})


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A time span during which a part of the network is expected to be broken.

    Attributes:
        id: unique, stable id (a plain token).
        scope: one of ``MAINTENANCE_SCOPES``.
        target: what the scope names: a device name, ``device|interface``, a
            site slug, a role slug or a tag slug. A site window covers its
            devices and their interfaces; a device window covers its interfaces.
        start, end: the first (or only) occurrence, timezone-aware, ``start < end``.
        rrule: an RFC 5545 RRULE (``FREQ=WEEKLY;BYDAY=SU``) repeating the
            occurrence; ``None`` for a one-off window.
        timezone: the IANA zone the recurrence is evaluated in (wall-clock time,
            so DST shifts move the UTC instant, not the local time).
        reason: free text for operators.
    """

    id: str
    scope: str
    target: str
    start: datetime
    end: datetime
    rrule: str | None = None
    timezone: str = "UTC"
    reason: str = ""


class MaintenanceCalendar(Protocol):
    """Which maintenance window, if any, covers a target at an instant.

    ``active`` is synchronous and O(1) in the number of windows for a target
    (an index by scope and target, never a scan of all windows): the
    maintenance gate calls it per event. Windows are kept durably.
    """

    async def start(self) -> None:
        """Load windows (config and durable store). Raises ``StoreError``."""
        ...

    async def close(self) -> None:
        """Release resources. Idempotent; safe without ``start``."""
        ...

    def active(
        self,
        at: datetime,
        *,
        device: str | None = None,
        interface: str | None = None,
        site: str | None = None,
        role: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> MaintenanceWindow | None:
        """The window covering the given target at ``at`` (timezone-aware), or ``None``.

        A window matches when its scope names the device, the interface
        (``device|interface``), the site, the role, or one of the tags.
        """
        ...

    def next_change(self, after: datetime) -> datetime | None:
        """The next instant after ``after`` at which any window starts or ends
        (for re-evaluating facts when a window closes), or ``None``."""
        ...

    async def add(self, window: MaintenanceWindow) -> None:
        """Add (or replace, by id) a window durably. Raises ``StoreError``."""
        ...

    async def remove(self, window_id: str) -> bool:
        """Remove a window; ``True`` if it existed. Raises ``StoreError``."""
        ...

    def windows(self) -> list[MaintenanceWindow]:
        """Every window, ordered by start."""
        ...
