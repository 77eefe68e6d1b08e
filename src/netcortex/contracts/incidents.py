"""Contracts: incidents — outcomes correlated by association (issue 8; stdlib only).

A cable cut fires two link-downs, a BGP drop and maybe a Meraki uplink alert; a
core switch reboot fires fifty. The correlator (``association/``) turns such
outcomes into one **incident** each, with its rule, its root, its members and
the evidence (outcome ids), and resolves it when every member has recovered.

Lifecycle: ``open`` → ``resolved`` (terminal). A late event never reopens a
resolved incident; it opens a new one. Every change bumps ``version``, so a
store keeps the newest and a reader can tell two snapshots apart. Transitions
are published on ``incident.<state>.<id>`` (``opened``, ``updated``,
``resolved``; ``flapping``/``stabilised`` for the flap rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from netcortex.contracts.events import Severity

__all__ = [
    "INCIDENT_RULES",
    "Incident",
    "IncidentCursor",
    "IncidentQuery",
    "IncidentState",
    "IncidentStore",
    "IncidentTransition",
]

#: The correlation rules, each in its own small unit of ``association/``.
INCIDENT_RULES = frozenset(
    {
        "cable_pair",  # link-downs on both ends of one cable within a window
        "device_root",  # device_down / device_reboot with its interfaces' link-downs
        "bgp_over_link",  # a bgp_drop whose session runs over a down interface
        "site_outage",  # at least N devices of one site down within a window
        "flapping",  # an interface or BGP session changing state too often
    }
)


class IncidentState(StrEnum):
    """Where an incident is; ``resolved`` is terminal."""

    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Incident:
    """One correlated problem, as of ``version``.

    Attributes:
        incident_id: stable id (derived from the rule, the root and the outcome
            that opened it: replaying the same outcomes gives the same id).
        rule: one of ``INCIDENT_RULES``.
        root: what the incident is about, as a typed key: ``device:<name>``,
            ``interface:<device>|<if>``, ``cable:<a-end>~<b-end>`` (ends sorted),
            ``site:<slug>``, ``bgp:<device>|<peer>``.
        state: ``IncidentState``.
        severity: the highest severity among its evidence.
        summary: one human line.
        members: the targets involved (``device`` or ``device|interface``), sorted.
        evidence: outcome ids, in the order they joined.
        inhibited: outcome ids that are symptoms of the root (children).
        opened_at, updated_at: when it opened / last changed.
        resolved_at: when it resolved (``None`` while open).
        site: the site, when all members share one.
        flapping: for the flap rule: ``True`` while above the high threshold,
            ``False`` once stabilised.
        version: 1 when opened, +1 on every change.
    """

    incident_id: str
    rule: str
    root: str
    state: IncidentState
    severity: Severity
    summary: str
    members: tuple[str, ...]
    evidence: tuple[str, ...]
    opened_at: datetime
    updated_at: datetime
    inhibited: tuple[str, ...] = ()
    resolved_at: datetime | None = None
    site: str | None = None
    flapping: bool | None = None
    version: int = 1
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncidentTransition:
    """What changed: ``opened``, ``updated``, ``resolved``, ``flapping``, ``stabilised``."""

    kind: str
    incident: Incident
    at: datetime
    #: the outcome that caused it (``None`` for time-driven transitions)
    outcome_id: str | None = None


@dataclass(frozen=True, slots=True)
class IncidentCursor:
    """Position in the newest-first order (``updated_at`` desc, ``incident_id`` desc)."""

    updated_at: datetime
    incident_id: str


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    """Filters for ``IncidentStore.query``; ``None`` means any."""

    state: IncidentState | None = None
    rule: str | None = None
    site: str | None = None
    #: incidents with this device among their members (or as root)
    device: str | None = None
    since: datetime | None = None
    before: IncidentCursor | None = None
    limit: int = 100


class IncidentStore(Protocol):
    """Durable incidents (SQLite or PostgreSQL, beside the outcomes)."""

    async def start(self) -> None:
        """Open, create or migrate. Idempotent."""
        ...

    async def close(self) -> None:
        """Close. Idempotent."""
        ...

    async def save(self, incident: Incident) -> bool:
        """Insert or replace by ``incident_id`` if ``version`` is newer than the
        stored one; ``True`` when written (an older or equal version is ignored)."""
        ...

    async def get(self, incident_id: str) -> Incident | None:
        """One incident by id."""
        ...

    async def query(self, query: IncidentQuery) -> Sequence[Incident]:
        """Incidents matching ``query``, newest change first."""
        ...

    async def open_incidents(self) -> Sequence[Incident]:
        """Every open incident (to rebuild the correlator's state after a restart)."""
        ...
