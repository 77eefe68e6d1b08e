"""Association rules: what a rule proposes (not public).

A rule looks at one new fact and the indexed facts around it and either
proposes an incident — its rule name, its root, the related facts and why — or
nothing. The correlator decides whether the proposal opens a new incident,
joins an open one, or absorbs lower-ranked ones. May import: contracts, config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from netcortex.association._facts import Fact

__all__ = ["Proposal", "ordered", "within"]


@dataclass(frozen=True, slots=True)
class Proposal:
    """An incident a rule would open (or grow) for a new fact.

    Attributes:
        rule: one of ``contracts.incidents.INCIDENT_RULES``.
        rank: site 4 > device 3 > cable / BGP-over-link 2; a higher rank absorbs
            a lower one sharing a member.
        root: the typed root key (``device:r1``, ``cable:a|x~b|y`` ...).
        facts: the related facts, the new one included, oldest first.
        summary: one human line.
        details: why (``why``) and the numbers the decision used.
    """

    rule: str
    rank: int
    root: str
    facts: tuple[Fact, ...]
    summary: str
    details: dict[str, object] = field(default_factory=dict)


def within(a: datetime, b: datetime, window: float) -> bool:
    """``a`` and ``b`` at most ``window`` seconds apart (either order)."""
    return abs((a - b).total_seconds()) <= window


def ordered(facts: list[Fact]) -> tuple[Fact, ...]:
    """Facts oldest first, ties by member (deterministic)."""
    return tuple(sorted(facts, key=lambda f: (f.at, f.member)))
