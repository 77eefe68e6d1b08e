"""Fixtures for the association tests: a scenario driver with a fake clock.

Times are passed in (``Scenario.at``); nothing sleeps. Outcome ids are
``o<n>-<handler>-<target>`` so a replay of the same sends gives the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from netcortex.association import Correlator
from netcortex.config import AssociationConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentTransition
from netcortex.contracts.memory import SemanticMemory
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.memory.semantic import FileInventory

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)

#: fixture topology (tests/shared inventory): cables and BGP sessions used below
R1N_WAN = "r1-north|GigabitEthernet0/0/0"  # cable to R1S_WAN
R1S_WAN = "r1-south|GigabitEthernet0/0/0"
R1N_SW = "r1-north|GigabitEthernet0/0/1"  # cable to SW1N_UP
SW1N_UP = "sw1-north|GigabitEthernet1/0/1"
SW1N_SW2 = "sw1-north|GigabitEthernet1/0/3"  # cable to SW2N_SW1
SW2N_SW1 = "sw2-north|GigabitEthernet1/0/3"
SW1N_EDGE = "sw1-north|GigabitEthernet1/0/2"  # no cable
BGP_N_S = "r1-north|203.0.113.1"  # r1-north's iBGP session to r1-south
BGP_S_N = "r1-south|203.0.113.0"  # and back
BGP_TRANSIT = "r1-north|203.0.113.9"  # transit-a: peer not in the inventory

_SEVERITY = {
    "link_down": Severity.HIGH,
    "link_up": Severity.INFO,
    "bgp_drop": Severity.HIGH,
    "bgp_established": Severity.INFO,
    "device_down": Severity.HIGH,
    "device_up": Severity.INFO,
    "device_reboot": Severity.WARN,
}


@dataclass
class Scenario:
    """Drives one correlator with a fake clock and records what it said."""

    correlator: Correlator
    now: datetime = T0
    sent: list[tuple[ReflexOutcome, datetime]] = field(default_factory=list)
    transitions: list[IncidentTransition] = field(default_factory=list)

    def at(self, seconds: float) -> Scenario:
        """Set the clock to ``T0 + seconds``."""
        self.now = T0 + timedelta(seconds=seconds)
        return self

    def send(
        self,
        handler: str,
        target: str,
        *,
        kind: OutcomeKind = OutcomeKind.LOGGED,
        severity: Severity | None = None,
        trace: dict[str, Any] | None = None,
        site: str | None = None,
    ) -> list[IncidentTransition]:
        """Observe one outcome of ``handler`` about ``target`` at the current time."""
        n = len(self.sent) + 1
        outcome = ReflexOutcome(
            outcome_id=f"o{n}-{handler}-{target}",
            handler_id=handler,
            event_id=f"e{n}",
            subject=f"reflex.{handler}.{kind.value}",
            kind=kind,
            severity=severity or _SEVERITY.get(handler, Severity.INFO),
            target=target,
            device=target.partition("|")[0],
            site=site,
            occurred_at=self.now,
            recorded_at=self.now,
            trace=trace or {},
        )
        self.sent.append((outcome, self.now))
        got = self.correlator.observe(outcome, self.now)
        self.transitions.extend(got)
        return got

    def tick(self) -> list[IncidentTransition]:
        """Let the correlator see the current time."""
        got = self.correlator.tick(self.now)
        self.transitions.extend(got)
        return got

    def open(self) -> list[Incident]:
        """The correlator's open incidents."""
        return self.correlator.open_incidents()

    def only(self) -> Incident:
        """The single open incident (fails when there is not exactly one)."""
        incidents = self.open()
        assert len(incidents) == 1, [(i.rule, i.root) for i in incidents]
        return incidents[0]

    def oid(self, n: int) -> str:
        """The outcome id of the ``n``-th send (1-based)."""
        return self.sent[n - 1][0].outcome_id


def replay(sent: list[tuple[ReflexOutcome, datetime]], correlator: Correlator) -> list[Any]:
    """Observe ``sent`` again on ``correlator``; the transitions as comparable tuples."""
    out = []
    for outcome, now in sent:
        for t in correlator.observe(outcome, now):
            out.append((t.kind, t.incident.incident_id, t.incident.version, t.incident.members))
    return out


@pytest.fixture
def memory(inventory: FileInventory) -> SemanticMemory:
    """The shared NetBox fixture inventory, loaded (``tests/unit/conftest.py``)."""
    return inventory


@pytest.fixture
def config() -> AssociationConfig:
    """The default association config."""
    return AssociationConfig()


@pytest.fixture
def scenario(memory: SemanticMemory, config: AssociationConfig) -> Scenario:
    """A correlator on the fixture inventory, clock at T0."""
    return Scenario(Correlator(memory, config))
